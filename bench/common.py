"""Shared by the benchmarks: the native stack, a results line, percentiles."""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from apt_energy.config import Settings
from apt_energy.core.mqtt import MqttLogin, MqttRole
from apt_energy.stack import NativeStack
from apt_energy.stack.secrets import ensure_dotenv, write_private

from apt_energy import config

# Benchmarks isolate their MQTT traffic under test/<tag>/…, which the broker grants every role when
# mqtt.test_prefix_root is set (as the test session does).
TEST_PREFIX_ROOT = "test"


def stack_settings() -> Settings:
    """The stack, its broker granting the test prefix root for this run only: at exit (also after an
    error) :func:`leave_as_found` takes the grants, databases, topics and ACLs the run made away."""
    ensure_dotenv()
    os.environ["APT_ENERGY_MQTT_TEST_PREFIX_ROOT"] = TEST_PREFIX_ROOT
    settings = config.load()
    stack = NativeStack.from_settings(settings)
    stack.up()  # restarts a running broker with the test grants unless it has them
    atexit.register(leave_as_found, stack, settings)
    return settings


BENCH_DATABASES = "bench\\_%"   # LIKE pattern: bench_spark's bench_<tag>
BENCH_TOPICS = "bench."          # every benchmark's Kafka topics start so


def leave_as_found(stack: NativeStack, settings: Settings) -> None:
    """What benchmarks made on the user's stack removed: ``bench_*`` databases, ``bench.*`` topics and
    their ACLs, retained test messages, and the broker's test grants."""
    from apt_energy.stack.kafka import KafkaAdmin, delete_topic_acls, prune_acls
    from confluent_kafka.admin import AdminClient
    from psycopg import sql

    with stack.postgres.admin_connect() as admin:
        names = [r[0] for r in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                             (BENCH_DATABASES,)).fetchall()]
        for name in names:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    cluster = KafkaAdmin.from_settings(settings)
    kafka = AdminClient(cluster.client().config())
    topics = [t for t in kafka.list_topics(timeout=10).topics if t.startswith(BENCH_TOPICS)]
    for future in (kafka.delete_topics(topics) if topics else {}).values():
        future.result(timeout=30)
    delete_topic_acls(cluster, topics)
    prune_acls(cluster)
    stack.withdraw_test_grants()
    os.environ.pop("APT_ENERGY_MQTT_TEST_PREFIX_ROOT", None)
    print(f"\nbench: removed databases={len(names)} topics={len(topics)} and the broker's test grants")


def mosquitto_client_env(settings: Settings, role: MqttRole, directory: Path) -> dict[str, str]:
    """Environment for ``mosquitto_pub``/``mosquitto_sub`` logging in as ``role`` over TLS: the options go in
    the clients' own 0600 options file ($XDG_CONFIG_HOME/mosquitto_pub), never on the command line."""
    username, password = MqttLogin.from_settings(settings, role).credentials
    lines = [f"-u {username}", f"-P {password.reveal()}"]
    if settings.mqtt.tls:
        lines.append(f"--cafile {settings.mqtt_ca_file}")
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        write_private(directory / tool, "\n".join(lines) + "\n")
    return {**os.environ, "XDG_CONFIG_HOME": str(directory)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def report(name: str, figures: dict[str, float | str]) -> None:
    """Print a bench's detail lines (bench/report.py keeps the figures of a run in bench/results/)."""
    print(f"\n== {name}")
    for key, value in figures.items():
        print(f"  {key:<44} {value:,.3f}" if isinstance(value, float) else f"  {key:<44} {value}")
