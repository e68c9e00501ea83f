"""Edge fleet: 10,000 devices in one process against the native Mosquitto.

Measures time to all-online, RSS per device and the aggregate QoS 1 publish rate, and the ratio of that
rate to `mosquitto_pub -q 1 --repeat N` (Mosquitto's own C client, one connection) publishing the same number
of readings in the same run. Goals (issue): all online ≤ 60 s, ≤ 100 KB per device, rate ≥ 0.5 × native.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apt_energy.config.settings import BuildingGroup, Household, Settings
from apt_energy.edge.fleet import Fleet, FleetOptions
from apt_energy.stack.mosquitto import Mosquitto

from bench.common import TEST_PREFIX_ROOT, mosquitto_client_env, report, rss_kb, stack_settings


def native_rate(settings, count: int, payload: bytes) -> float:  # type: ignore[no-untyped-def]
    """mosquitto_pub publishing ``count`` QoS 1 messages. ``--repeat`` waits for every PUBACK; ``-l`` (stdin)
    does not: it exits with messages unsent (34k of 100k arrived here), so it would flatter the baseline."""
    with tempfile.TemporaryDirectory() as tmp:  # same TLS and login as the fleet's devices get
        env = mosquitto_client_env(settings, "admin", Path(tmp))
        began = time.monotonic()
        subprocess.run(["mosquitto_pub", "-h", settings.mqtt.host, "-p", str(settings.mqtt.port), "-q", "1",
                        "-M", "100", "-m", payload.decode(), "--repeat", str(count),
                        "-t", f"{TEST_PREFIX_ROOT}/{uuid.uuid4().hex}/reading"], check=True, env=env)
    return count / (time.monotonic() - began)


def fleet_rate(settings: Settings, households: list[Household], hours: int) -> tuple[float, float, int, float]:
    """(seconds to all online, RSS per device KB, readings acked, publish rate)."""
    start = datetime(2024, 7, 1, tzinfo=UTC)
    before = rss_kb()
    fleet = Fleet(settings, households, FleetOptions(start=start, until=start + timedelta(hours=hours),
                                                     interval_s=3600, connect_batch=500, progress_s=3600))
    online_s = fleet.connect_all(timeout=180)
    per_device_kb = (rss_kb() - before) / len(households)
    began = time.monotonic()
    stats = fleet.run()
    return online_s, per_device_kb, stats.acked, stats.acked / (time.monotonic() - began)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--hours", type=int, default=4, help="simulated hours: readings = devices × 3 × hours")
    args = ap.parse_args()
    base = stack_settings()
    buildings = -(-args.devices // 80)
    with tempfile.TemporaryDirectory() as tmp:
        # A broker of our own: its identity file must hold every simulated gateway (the stack's holds the
        # configured complex only), and the run does not disturb the stack's broker.
        settings = dataclasses.replace(
            base, mqtt=dataclasses.replace(base.mqtt, port=free_port(), plain_port=free_port(),
                                           topic_prefix=f"bench{uuid.uuid4().hex[:6]}"),
            complex=dataclasses.replace(
                base.complex, buildings=(BuildingGroup(tuple(range(1, buildings + 1)), 20, 4),)),
            stack=dataclasses.replace(base.stack, run_dir=str(Path(tmp) / "run")))
        broker = Mosquitto(settings)
        broker.up()
        try:
            households = settings.complex.households()[: args.devices]
            online_s, per_device_kb, acked, tls_rate = fleet_rate(settings, households, args.hours)
            plain = dataclasses.replace(settings, mqtt=dataclasses.replace(
                settings.mqtt, port=settings.mqtt.plain_port, tls=False, topic_prefix=settings.mqtt.topic_prefix + "p"))
            *_, plain_rate = fleet_rate(plain, households[: min(len(households), 840)], args.hours)
            payload = (b'{"v":1,"device_id":"hanbit-01-101","meter":"water","seq":1,"ts":"2024-07-01T01:00:00Z",'
                       b'"interval_s":3600,"value":0.0213,"total":1.2345,"unit":"m\\u00b3"}')
            native = native_rate(settings, acked, payload)
        finally:
            broker.down()
    report("edge", {
        "devices": float(len(households)),
        "time to all online (s)": online_s,
        "RSS per device (KB)": per_device_kb,
        "readings published (QoS 1, acked)": float(acked),
        "fleet publish rate over TLS (msg/s)": tls_rate,
        "mosquitto_pub -q 1 --repeat over TLS, same run (msg/s)": native,
        "ratio fleet / native": tls_rate / native,
        "fleet publish rate without TLS, same broker (msg/s)": plain_rate,
        "ratio TLS / plain (the cost of TLS)": tls_rate / plain_rate,
    })


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
