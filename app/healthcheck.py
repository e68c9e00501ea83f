"""Container healthchecks as one small command: ``python -m apt_energy.app.healthcheck CHECK ARG...``.

compose.yaml's checks for the project's services, each argument one word: podman 4.3's healthcheck runner
splits an exec-form argument at its spaces, so ``python -c "import json, sys; …"`` reached Python as
``import`` (measured under make compose-test); Docker passes it whole. Exit 0 healthy, 1 not.

- ``subscribed FILE``: the bridge's stats file says it is subscribed (edge devices publish after that);
- ``fresh FILE SECONDS``: the file was touched in the last SECONDS (the Spark job's ``--health-file``);
- ``connected PORT``: this container holds an established TCP connection to PORT (an edge replica's
  gateways to the broker).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ESTABLISHED = "01"   # /proc/net/tcp's state column


def subscribed(stats: Path) -> bool:
    try:
        return bool(json.loads(stats.read_text()).get("subscribed"))
    except (OSError, ValueError):
        return False


def fresh(path: Path, max_age_s: float, *, now: float | None = None) -> bool:
    try:
        return (time.time() if now is None else now) - path.stat().st_mtime <= max_age_s
    except OSError:
        return False


def connected(port: int, tables: Iterable[str]) -> bool:
    """Whether a /proc/net/tcp{,6} table lists an established connection whose remote port is ``port``."""
    suffix = f":{port:04X}"
    for table in tables:
        for line in table.splitlines()[1:]:
            cols = line.split()
            if len(cols) > 3 and cols[2].endswith(suffix) and cols[3] == ESTABLISHED:
                return True
    return False


def _tables() -> list[str]:
    out = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            out.append(Path(name).read_text())
        except OSError:
            continue
    return out


def main(argv: Sequence[str]) -> int:
    match list(argv):
        case ["subscribed", stats]:
            ok = subscribed(Path(stats))
        case ["fresh", path, seconds]:
            ok = fresh(Path(path), float(seconds))
        case ["connected", port]:
            ok = connected(int(port), _tables())
        case _:
            print("usage: python -m apt_energy.app.healthcheck subscribed FILE | fresh FILE SECONDS | connected PORT",
                  file=sys.stderr)
            return 2
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
