"""A private certificate authority for the broker's TLS listener, made once per stack with ``openssl``.

The CA and the server certificate live under the run directory (compose: a volume); clients verify the
broker against ``ca.crt`` (``mqtt.ca_file``). Keys are 0600 and never leave the machine. No passphrases
are involved, so nothing secret is on a command line.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from apt_energy.core.errors import ServiceError
from apt_energy.stack.process import require_binary

logger = logging.getLogger(__name__)

DAYS = 3650


@dataclass(frozen=True)
class ServerTls:
    ca_cert: Path
    cert: Path
    key: Path


def ensure_server_tls(directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> ServerTls:
    """Create the CA and a server certificate for ``hosts`` unless they exist; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    tls = ServerTls(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    if tls.ca_cert.exists() and tls.cert.exists() and tls.key.exists():
        return tls
    openssl = require_binary("openssl", package="openssl")
    ca_key = directory / "ca.key"
    san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)
    old = os.umask(0o077)  # keys are created private, not narrowed afterwards
    try:
        _run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", str(ca_key), "-out", str(tls.ca_cert), "-days", str(DAYS),
              "-subj", "/CN=apt-energy local CA", "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        csr = directory / "server.csr"
        _run([openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", str(tls.key), "-out", str(csr), "-subj", f"/CN={hosts[0]}"])
        ext = directory / "server.ext"
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
        _run([openssl, "x509", "-req", "-in", str(csr), "-CA", str(tls.ca_cert), "-CAkey", str(ca_key),
              "-CAcreateserial", "-out", str(tls.cert), "-days", str(DAYS), "-extfile", str(ext)])
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
    finally:
        os.umask(old)
    tls.ca_cert.chmod(0o644)
    tls.cert.chmod(0o644)
    logger.info("created a local CA and a server certificate for %s in %s", ", ".join(hosts), directory)
    return tls


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603 - our argv
    if result.returncode != 0:
        raise ServiceError(f"openssl failed: {(result.stderr or result.stdout).strip()[-300:]}", service="mosquitto")
