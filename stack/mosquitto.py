"""Mosquitto from the Debian package, with the project's own config, data and log under the run dir."""

from __future__ import annotations

import logging
import os
import platform
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

from apt_energy.bridge.routing import MESSAGE_SIZE_LIMIT
from apt_energy.config import Settings
from apt_energy.stack import dynsec
from apt_energy.stack.dynsec import BrokerUser
from apt_energy.stack.pki import ServerTls, ensure_server_tls
from apt_energy.stack.process import alive, is_ours, port_open, read_pid, require_binary, spawn, terminate, wait_until
from apt_energy.stack.secrets import write_private
from apt_energy.stack.service import ServiceStatus

from apt_energy.errors import ConfigError, ServiceError
from apt_energy.mqtt import credentials, login
from apt_energy.topics import device_base

logger = logging.getLogger(__name__)


PLUGIN_NAME = "mosquitto_dynamic_security.so"


def find_dynsec_plugin(roots: Sequence[Path] = (Path("/usr/lib"), Path("/usr/local/lib"))) -> str:
    """The dynamic-security plugin of the installed Mosquitto: Debian puts it under the architecture's
    multiarch folder (``/usr/lib/aarch64-linux-gnu/…`` on arm64), Alpine and source builds directly in
    ``/usr/lib``. Python's own MULTIARCH is tried first; the path it names is returned when none exists
    yet (the error then comes from :meth:`Mosquitto.up`, naming the package)."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"
    candidates = [roots[0] / multiarch / PLUGIN_NAME,
                  *sorted(p for root in roots for p in root.glob(f"*/{PLUGIN_NAME}")),
                  *(root / PLUGIN_NAME for root in roots)]
    return str(next((p for p in candidates if p.exists()), candidates[0]))


DYNSEC_PLUGIN = find_dynsec_plugin()


def render_config(*, port: int, plain_port: int, data_dir: Path, tls: ServerTls, dynsec_file: Path,
                  host: str = "127.0.0.1", run_as_root: bool = False, plugin: str = DYNSEC_PLUGIN) -> str:
    """The broker config. Every client logs in (dynamic-security plugin: one identity per gateway, see
    :mod:`apt_energy.stack.dynsec`); clients use the TLS listener; the plain one is for local tools and
    binds loopback only. Persistence keeps retained messages and persistent sessions across restarts; the
    queue limits are raised so a bridge that is down for a while does not lose its backlog.

    Mosquitto writes its database on a clean stop (SIGTERM), so a restart loses nothing; a crash (kill -9)
    loses what changed since the last save and was not yet delivered. ``autosave_interval 1`` saves every
    second, the smallest time window it offers (``autosave_on_changes`` saves after every N changes instead:
    a whole-database write several times a second at our rates, and no better in bench/bench_broker_crash.py).
    Payloads over ``message_size_limit`` are refused at the door (the bridge dead-letters anything over its
    own, smaller ``max_payload_bytes``)."""
    lines = [
        "# written by `apt-energy stack up`; edit config/pipeline.yaml instead",
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {plugin}",
        f"plugin_opt_config_file {dynsec_file}",
        f"listener {port} {host}",
        "protocol mqtt",
        f"cafile {tls.ca_cert}",
        f"certfile {tls.cert}",
        f"keyfile {tls.key}",
        "tls_version tlsv1.2",
        f"listener {plain_port} 127.0.0.1",
        "protocol mqtt",
        "persistence true",
        f"persistence_location {data_dir}/",
        "autosave_interval 1",
        f"message_size_limit {MESSAGE_SIZE_LIMIT}",
        "max_queued_messages 2000000",
        "max_queued_bytes 0",
        "max_inflight_messages 0",
        "max_keepalive 300",
        "persistent_client_expiration 2d",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "connection_messages false",
    ]
    if run_as_root:
        # Mosquitto drops root to the `mosquitto` user by default, which cannot write our data dir.
        lines.append("user root")
    return "\n".join(lines) + "\n"


def render_identities(settings: Settings) -> str:
    """Every household's gateway, the bridge, the operator and the admin, from the settings' secrets."""
    mq = settings.mqtt
    devices = [(h.device_id, device_base(mq.topic_prefix, h),
                credentials(settings, "device", device_id=h.device_id)[1]) for h in settings.complex.households()]
    users = {role: BrokerUser(*credentials(settings, role), role=role)  # type: ignore[arg-type]
             for role in ("bridge", "operator", "admin")}
    return dynsec.render(prefix=mq.topic_prefix, devices=devices, bridge=users["bridge"],
                         operator=users["operator"], admin=users["admin"], test_prefix_root=mq.test_prefix_root)


class Mosquitto:
    name = "mosquitto"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.run_dir / "mosquitto"
        self.pid_file = self.dir / "pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "mosquitto.log"

    def up(self) -> None:
        if is_ours(read_pid(self.pid_file), str(self.dir)):
            return
        binary = require_binary("mosquitto", package="mosquitto", candidates=["/usr/sbin/mosquitto"])
        host, port = self.settings.mqtt.host, self.settings.mqtt.port
        if port_open(host, port):
            raise ServiceError(f"port {port} is in use by another process (a system mosquitto? "
                             f"`systemctl stop mosquitto`), or set APT_ENERGY_MQTT_PORT to a free port")
        if port_open("127.0.0.1", self.settings.mqtt.plain_port):
            raise ServiceError(f"port {self.settings.mqtt.plain_port} is in use by another process; set "
                               "APT_ENERGY_MQTT_PLAIN_PORT to a free port")
        if not Path(DYNSEC_PLUGIN).exists():
            raise ServiceError(f"mosquitto's dynamic-security plugin is missing ({DYNSEC_PLUGIN}): "
                               "`apt-get install mosquitto` (Debian ships it in the package)")
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        tls = ensure_server_tls(self.dir / "tls", hosts=(host, "localhost"))
        # Written on every start: .env is the source of truth, so rotating a secret is edit + restart.
        dynsec_file = self.dir / "identities.json"
        write_private(dynsec_file, render_identities(self.settings))
        conf = self.dir / "mosquitto.conf"
        conf.write_text(render_config(port=port, plain_port=self.settings.mqtt.plain_port, data_dir=self.dir / "data",
                                      tls=tls, dynsec_file=dynsec_file, host=host, run_as_root=os.geteuid() == 0))
        pid = spawn([binary, "-c", str(conf)], pid_file=self.pid_file, log_file=self.log_file)
        wait_until(lambda: port_open(host, port), timeout=20, what="mosquitto", log_file=self.log_file,
                   alive=lambda: alive(pid))
        logger.info("mosquitto up port=%d pid=%d", port, pid)

    def grants_prefix_root(self, root: str) -> bool:
        """Whether the running broker's identities grant the test prefix root (``mqtt.test_prefix_root``)."""
        import json

        try:
            data = json.loads((self.dir / "identities.json").read_text())
        except (OSError, ValueError):
            return False
        return any(acl.get("topic", "").startswith(f"{root}/+/") for role in data.get("roles", [])
                   for acl in role.get("acls", []))

    def down(self) -> None:
        pid = read_pid(self.pid_file)
        if is_ours(pid, str(self.dir)):
            assert pid is not None
            terminate(pid)
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> ServiceStatus:
        pid = read_pid(self.pid_file)
        running = is_ours(pid, str(self.dir))
        scheme = "mqtts" if self.settings.mqtt.tls else "mqtt"
        endpoint = f"{scheme}://{self.settings.mqtt.host}:{self.settings.mqtt.port}"
        healthy = running and _mqtt_ping(self.settings)
        return ServiceStatus(self.name, running, healthy, endpoint, pid=pid if running else None)


def _mqtt_ping(settings: Settings) -> bool:
    """A real MQTT CONNECT/CONNACK over TLS as the admin, not just an open port."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    try:
        login(client, settings, "admin")
        rc = client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=5)
        if rc != 0:
            return False
        deadline = time.monotonic() + 3.0
        while not client.is_connected() and time.monotonic() < deadline:
            client.loop(timeout=0.2)  # the TLS handshake and CONNACK take a few rounds
        ok = client.is_connected()
        client.disconnect()
        return ok
    except (OSError, ConfigError):
        return False
