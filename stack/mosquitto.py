"""Mosquitto from the Debian package, with the project's own config, data and log under the run dir."""

from __future__ import annotations

import logging
import os
import platform
import sysconfig
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apt_energy.bridge.routing import MESSAGE_SIZE_LIMIT
from apt_energy.config import Household, Secret, Settings
from apt_energy.config.settings import MqttSettings
from apt_energy.core.errors import ConfigError, ServiceError
from apt_energy.core.mqtt import MqttLogin, MqttRole, credentials, role_secret
from apt_energy.core.topics import device_base
from apt_energy.stack import dynsec
from apt_energy.stack.dynsec import BrokerUser
from apt_energy.stack.pki import ServerTls, ensure_server_tls
from apt_energy.stack.private import narrow_tree, private_dir, reachable_by, unix_user
from apt_energy.stack.process import alive, is_ours, port_open, read_pid, require_binary, spawn, terminate, wait_until
from apt_energy.stack.secrets import write_private
from apt_energy.stack.service import ServiceStatus

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
BROKER_USER = "mosquitto"   # the Debian package's unprivileged user

# Persistence, sized in bench/bench_broker_crash.py (README "Broker state"): see render_config.
# Mosquitto 2.0 rewrites its whole database at each save and serves nobody meanwhile: 0.1-1.2 s at 100k
# retained topics (31 MB), 4-6 s at 1-5 M queued readings (0.4-1.8 GB), on 2 busy cores. Every 10 s: the
# broker stands still 1-12 % of the time at 100,000 households' steady state (was 13-100 % at 1 s) and
# about half of it only while it holds a multi-million backlog; a kill -9 loses what it accepted and had
# neither delivered nor saved in the last 10 s (60 s measured 3-4x the loss for a fraction less stall).
AUTOSAVE_S = 10
# The outage it absorbs without loss: 10 minutes of the demo's rate (~8,800 readings/s, 5.3 M), +13 %.
MAX_QUEUED_MESSAGES = 6_000_000
# A session away longer than a day has outgrown any outage the queue absorbs (6 M = 20 h of 100,000
# households' hourly readings): drop it (the bridge's own session_expiry_s is the same day).
PERSISTENT_CLIENT_EXPIRATION = "1d"


def render_config(*, port: int, plain_port: int, data_dir: Path, tls: ServerTls, dynsec_file: Path,
                  host: str = "127.0.0.1", run_as_root: bool = False, plugin: str = DYNSEC_PLUGIN,
                  user: str | None = None) -> str:
    """The broker config. Every client logs in (dynamic-security plugin: one identity per gateway, see
    :mod:`apt_energy.stack.dynsec`); clients use the TLS listener; the plain one is for local tools and
    binds loopback only. Persistence keeps retained messages and persistent sessions across restarts; the
    queue limits are raised so a bridge that is down for a while does not lose its backlog.

    Mosquitto writes its database on a clean stop (SIGTERM), so a restart loses nothing; a crash (kill -9)
    loses what changed since the last save and was not yet delivered. Each save rewrites the whole database
    in the broker's one thread, so the interval is a trade between that loss window and the time the broker
    stands still (:data:`AUTOSAVE_S`, measured in bench/bench_broker_crash.py); the queue cap and the session
    expiry bound the state a save has to write.
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
        f"autosave_interval {AUTOSAVE_S}",
        f"message_size_limit {MESSAGE_SIZE_LIMIT}",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "max_queued_bytes 0",
        "max_inflight_messages 0",
        "max_keepalive 300",
        f"persistent_client_expiration {PERSISTENT_CLIENT_EXPIRATION}",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S%z",
        "connection_messages false",
    ]
    if user is not None:
        # Started as root, Mosquitto reads its config, keys and identities, opens its listeners, then
        # becomes ``user`` (Debian's unprivileged ``mosquitto``), which owns the data dir it writes.
        lines.append(f"user {user}")
    elif run_as_root:
        # Only where the package's user cannot reach the run dir (see Mosquitto.run_as).
        lines.append("user root")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class MosquittoOptions:
    """What the broker is run and configured with: the MQTT section, its run dir, the CA clients verify it
    with (None: no TLS), and every identity it knows — the households' gateways, the bridge, the operator,
    the admin — with the MQTT secrets they come from (the broker is given them all; no other secret)."""

    mqtt: MqttSettings
    run_dir: Path
    ca_file: Path | None
    households: tuple[Household, ...]
    meters: tuple[str, ...]
    secrets: dict[str, Secret]     # role → the secret it logs in with (a device's: the fleet's device secret)

    @classmethod
    def from_settings(cls, settings: Settings) -> MosquittoOptions:
        roles: tuple[MqttRole, ...] = ("device", "bridge", "operator", "admin")
        return cls(settings.mqtt, settings.run_dir, settings.mqtt_ca_file if settings.mqtt.tls else None,
                   settings.complex.households(), tuple(settings.energy),
                   {role: role_secret(settings, role) for role in roles})

    def login(self, role: MqttRole) -> MqttLogin:
        """``role``'s login (not a device's: each has its own, see :func:`render_identities`)."""
        return MqttLogin(*credentials(self.mqtt, role, self.secrets[role]), self.ca_file)


def render_identities(options: MosquittoOptions) -> str:
    """Every household's gateway, the bridge, the operator and the admin, from the options' secrets."""
    mq = options.mqtt
    fleet_secret = options.secrets["device"]
    devices = [(h.device_id, device_base(mq.topic_prefix, h),
                credentials(mq, "device", fleet_secret, device_id=h.device_id)[1]) for h in options.households]
    users = {role: BrokerUser(*credentials(mq, role, options.secrets[role]), role=role)  # type: ignore[arg-type]
             for role in ("bridge", "operator", "admin")}
    return dynsec.render(prefix=mq.topic_prefix, devices=devices, bridge=users["bridge"],
                         operator=users["operator"], admin=users["admin"], meters=options.meters,
                         test_prefix_root=mq.test_prefix_root)


class Mosquitto:
    name = "mosquitto"

    def __init__(self, options: MosquittoOptions) -> None:
        self.options = options
        self.dir = options.run_dir / "mosquitto"
        self.pid_file = self.dir / "pid"

    @classmethod
    def from_settings(cls, settings: Settings) -> Mosquitto:
        return cls(MosquittoOptions.from_settings(settings))

    @property
    def log_file(self) -> Path:
        return self.dir / "mosquitto.log"

    def up(self) -> None:
        if is_ours(read_pid(self.pid_file), str(self.dir)):
            if self.rights_current():
                return
            # e.g. a test session or a benchmark that was killed left its test/+/… grants in the running
            # broker: restart it with the rights the settings give now.
            logger.warning("mosquitto runs with other rights than the settings give (stale test grants?); "
                           "restarting it")
            stale = self.granted_test_roots() - {self.options.mqtt.test_prefix_root}
            self.down()
            self._start()
            for root in sorted(stale):  # what the killed run left retained under its test prefixes
                clear_retained(self.options, f"{root}/#")
            return
        self._start()

    def _start(self) -> None:
        binary = require_binary("mosquitto", package="mosquitto", candidates=["/usr/sbin/mosquitto"])
        host, port = self.options.mqtt.host, self.options.mqtt.port
        if port_open(host, port):
            raise ServiceError(f"port {port} is in use by another process (a system mosquitto? "
                             f"`systemctl stop mosquitto`), or set APT_ENERGY_MQTT_PORT to a free port")
        if port_open("127.0.0.1", self.options.mqtt.plain_port):
            raise ServiceError(f"port {self.options.mqtt.plain_port} is in use by another process; set "
                               "APT_ENERGY_MQTT_PLAIN_PORT to a free port")
        if not Path(DYNSEC_PLUGIN).exists():
            raise ServiceError(f"mosquitto's dynamic-security plugin is missing ({DYNSEC_PLUGIN}): "
                               "`apt-get install mosquitto` (Debian ships it in the package)")
        user = self.run_as()
        owner = None if user in (None, "root") else user
        private_dir(self.dir, owner=owner)
        private_dir(self.dir / "data", owner=owner)
        tls = ensure_server_tls(self.dir / "tls", hosts=(host, "localhost"))
        # Written on every start: .env is the source of truth, so rotating a secret is edit + restart.
        dynsec_file = self.dir / "identities.json"
        write_private(dynsec_file, render_identities(self.options))
        conf = self.dir / "mosquitto.conf"
        conf.write_text(render_config(port=port, plain_port=self.options.mqtt.plain_port, data_dir=self.dir / "data",
                                      tls=tls, dynsec_file=dynsec_file, host=host, run_as_root=os.geteuid() == 0,
                                      user=user))
        # The broker's user gets what it writes (its database, the identities the plugin saves) and what it
        # reads after dropping root (its certificate and key: Mosquitto loads them then); the CA's key
        # (the broker signs nothing) stays root's, 0600.
        narrow_tree(self.dir, owner=owner, keep=(self.dir / "tls" / "ca.key", self.dir / "tls" / "ca.srl"))
        pid = spawn([binary, "-c", str(conf)], pid_file=self.pid_file, log_file=self.log_file)
        wait_until(lambda: port_open(host, port), timeout=20, what="mosquitto", log_file=self.log_file,
                   alive=lambda: alive(pid))
        logger.info("mosquitto up port=%d pid=%d", port, pid)

    def run_as(self) -> str | None:
        """Who the broker runs as: as root, Debian's ``mosquitto`` user (``BROKER_USER``) when it exists
        and can reach the run dir (else root, with a warning); otherwise the calling user (None)."""
        if os.geteuid() != 0:
            return None
        user = unix_user(BROKER_USER)
        if user is None or not reachable_by(user, self.dir.parent):
            logger.warning("mosquitto runs as root: no user %s, or it cannot reach %s", BROKER_USER, self.dir)
            return "root"
        return BROKER_USER

    def rights_current(self) -> bool:
        """Whether the running broker's roles and ACLs (its identities file) are exactly what
        :func:`render_identities` gives for the current settings (passwords aside: their salts differ)."""
        import json

        try:
            running = json.loads((self.dir / "identities.json").read_text())
        except (OSError, ValueError):
            return False
        wanted = json.loads(render_identities(self.options))

        def rights(data: dict[str, object]) -> object:
            clients = data.get("clients")
            return (data.get("roles"), data.get("defaultACLAccess"),
                    sorted((c.get("username"), c.get("clientid"), json.dumps(c.get("roles")))  # type: ignore[union-attr]
                           for c in clients) if isinstance(clients, list) else None)

        return rights(running) == rights(wanted)

    def granted_test_roots(self) -> set[str]:
        """The test prefix roots (``<root>/+/…``) the running broker's identities grant the bridge."""
        import json

        try:
            data = json.loads((self.dir / "identities.json").read_text())
        except (OSError, ValueError):
            return set()
        return {acl["topic"][:-len("/+/#")] for role in data.get("roles", []) if role.get("rolename") == "bridge"
                for acl in role.get("acls", []) if acl.get("topic", "").endswith("/+/#")
                and not acl["topic"].startswith("$share/")}

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
        scheme = "mqtts" if self.options.mqtt.tls else "mqtt"
        endpoint = f"{scheme}://{self.options.mqtt.host}:{self.options.mqtt.port}"
        healthy = running and _mqtt_ping(self.options)
        return ServiceStatus(self.name, running, healthy, endpoint, pid=pid if running else None)


def _mqtt_ping(options: MosquittoOptions) -> bool:
    """A real MQTT CONNECT/CONNACK over TLS as the admin, not just an open port."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    try:
        options.login("admin").apply(client)
        rc = client.connect(options.mqtt.host, options.mqtt.port, keepalive=5)
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


def clear_retained(options: MosquittoOptions, topic_filter: str, *, settle_s: float = 1.0) -> int:
    """As the admin: delete every retained message under ``topic_filter`` (an empty retained publish
    each), e.g. what tests left under ``test/#``. Returns how many topics were cleared."""
    import paho.mqtt.client as mqtt

    found: set[str] = set()
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    options.login("admin").apply(client)
    client.on_message = lambda _c, _u, msg: found.add(msg.topic) if msg.retain and msg.payload else None
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda c, *_a: c.subscribe(topic_filter, qos=1)
    client.connect(options.mqtt.host, options.mqtt.port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise ServiceError(f"could not subscribe to {topic_filter} as the admin", service="mosquitto")
        time.sleep(settle_s)  # the broker sends the retained messages right after the SUBACK
        client.unsubscribe(topic_filter)
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in sorted(found)]
        for info in infos:
            info.wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()
    if found:
        logger.info("cleared retained topics=%d under %s", len(found), topic_filter)
    return len(found)
