"""Edge fleet: 10,000 devices in one process against the native Mosquitto.

Measures time to all-online, RSS per device and the aggregate QoS 1 publish rate (PUBACKs in, ledger
written), and the ratio of that rate to the native baseline in the same run on the same broker:
``mosquitto_pub -q 1 --repeat N`` (Mosquitto's own C client) publishing the same number of readings with
the same QoS 1, TLS and kind of login (one gateway's own identity and client id, on that gateway's reading
topic) and the same payload (a reading as the fleet encodes it). The difference, stated: the baseline is
one connection, and ``--repeat`` waits for each PUBACK before the next publish; the fleet spreads its
readings over one connection per gateway with up to ``FleetOptions.window`` unacknowledged each.
mosquitto_pub runs just before and just after the fleet; the baseline is the mean of the two. The
fleet's clock runs from its first tick to its last reading's PUBACK; mosquitto_pub's from its start to
its exit (one connection's connect and disconnect).
Goals (issue #15): fleet ≥ 1.0 × mosquitto_pub; all online ≤ 60 s; ≤ 100 KB per device.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apt_energy.config.settings import BuildingGroup, Household, Settings
from apt_energy.core import topics
from apt_energy.core.contract import Reading
from apt_energy.core.mqtt import MqttLogin
from apt_energy.edge.fleet import Fleet, FleetOptions
from apt_energy.stack.mosquitto import Mosquitto
from apt_energy.stack.secrets import write_private

from bench.common import report, rss_kb, stack_settings
from bench.figure import Figure


def native_rate(settings: Settings, household: Household, count: int) -> float:
    """mosquitto_pub publishing ``count`` QoS 1 readings as ``household``'s gateway. ``--repeat`` waits for
    every PUBACK; ``-l`` (stdin) does not: it exits with messages unsent (34k of 100k arrived here), so it
    would flatter the baseline."""
    meter = next(iter(settings.energy))
    payload = Reading(household.device_id, meter, 1, datetime(2024, 7, 1, 1, tzinfo=UTC), 3600,
                                      0.0213, 1.2345, settings.energy[meter].unit, life=1_700_000_000_000).to_json()
    username, password = MqttLogin.from_settings(settings, "device", device_id=household.device_id).credentials
    with tempfile.TemporaryDirectory() as tmp:  # the options file keeps the password off the command line
        write_private(Path(tmp) / "mosquitto_pub",
                      f"-u {username}\n-P {password.reveal()}\n--cafile {settings.mqtt_ca_file}\n")
        began = time.monotonic()
        subprocess.run(["mosquitto_pub", "-h", settings.mqtt.host, "-p", str(settings.mqtt.port), "-q", "1",
                        "-i", household.device_id, "-m", payload.decode(), "--repeat", str(count),
                        "-t", f"{topics.device_base(settings.mqtt.topic_prefix, household)}/{meter}/reading"],
                       check=True, env={**os.environ, "XDG_CONFIG_HOME": tmp})
    return count / (time.monotonic() - began)


def fleet_rate(settings: Settings, households: list[Household], hours: int) -> tuple[float, float, int, float]:
    """(seconds to all online, RSS per device KB, readings acked, publish rate)."""
    start = datetime(2024, 7, 1, tzinfo=UTC)
    before = rss_kb()
    fleet = Fleet.from_settings(settings, households, FleetOptions(start=start, until=start + timedelta(hours=hours),
                                                     interval_s=3600, connect_batch=500, progress_s=3600))
    online_s = fleet.connect_all(timeout=180)
    per_device_kb = (rss_kb() - before) / len(households)
    began = time.monotonic()
    stats = fleet.run()
    # until the last reading's PUBACK: not the shutdown after it (10,000 offline statuses, TLS closes,
    # the state and ledger files), which took 29 % of the run (py-spy) and publishes no reading
    return online_s, per_device_kb, stats.acked, stats.acked / ((fleet.drained_at or time.monotonic()) - began)


def figures(devices: int = 10_000, hours: int = 4) -> list[Figure]:
    """The fleet against mosquitto_pub in the same run, plus its connect time and memory per device."""
    base = stack_settings()
    buildings = -(-devices // 80)
    with tempfile.TemporaryDirectory() as tmp:
        # A broker of our own: its identity file must hold every simulated gateway (the stack's holds the
        # configured complex only), and the run does not disturb the stack's broker.
        settings = dataclasses.replace(
            base, mqtt=dataclasses.replace(base.mqtt, port=free_port(), plain_port=free_port(),
                                           topic_prefix=f"bench{uuid.uuid4().hex[:6]}"),
            complex=dataclasses.replace(
                base.complex, buildings=(BuildingGroup(tuple(range(1, buildings + 1)), 20, 4),)),
            stack=dataclasses.replace(base.stack, run_dir=str(Path(tmp) / "run")))
        broker = Mosquitto.from_settings(settings)
        broker.up()
        try:
            households = settings.complex.households()[:devices]
            before = native_rate(settings, households[0], len(households) * 3 * hours)
            online_s, per_device_kb, acked, tls_rate = fleet_rate(settings, households, hours)
            after = native_rate(settings, households[0], acked)
            native = (before + after) / 2   # around the fleet's run: a load swing moves both sides alike
            plain = dataclasses.replace(settings, mqtt=dataclasses.replace(
                settings.mqtt, port=settings.mqtt.plain_port, tls=False, topic_prefix=settings.mqtt.topic_prefix + "p"))
            *_, plain_rate = fleet_rate(plain, households[: min(len(households), 840)], hours)
        finally:
            broker.down()
    report("edge", {
        "devices": float(len(households)),
        "time to all online (s)": online_s,
        "RSS per device (KB)": per_device_kb,
        "readings published (QoS 1, acked)": float(acked),
        "fleet publish rate over TLS (msg/s)": tls_rate,
        "mosquitto_pub -q 1 --repeat over TLS, before / after the fleet (msg/s)": f"{before:,.0f} / {after:,.0f}",
        "mosquitto_pub, mean of before and after (msg/s)": native,
        "ratio fleet / native": tls_rate / native,
        "fleet publish rate without TLS, same broker (msg/s)": plain_rate,
        "ratio TLS / plain (the cost of TLS)": tls_rate / plain_rate,
    })
    return [
        Figure(f"fleet publish rate, {len(households):,} gateways, QoS 1 over TLS", tls_rate, "msg/s",
               "mosquitto_pub --repeat, 1 gateway", native, goal=1.0,
               note="baseline: one connection, waits for each PUBACK; same TLS, login kind, payload"),
        Figure("time to all online", online_s, "s", "—", float("nan"), target=60.0, higher_is_better=False),
        Figure("RSS per device", per_device_kb, "KB", "—", float("nan"), target=100.0, higher_is_better=False),
    ]


def main() -> None:
    from bench.report import Outcome, table

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--hours", type=int, default=4, help="simulated hours: readings = devices × 3 × hours")
    args = ap.parse_args()
    print(table([Outcome("edge", tuple(figures(args.devices, args.hours)))]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
