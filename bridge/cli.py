"""``apt-energy bridge``: forward device traffic from Mosquitto to Kafka."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from apt_energy.bridge.bridge import Bridge, mqtt_options, part_client_id
from apt_energy.bridge.metrics import BrokerSys, bridge_samples
from apt_energy.bridge.partition import Part
from apt_energy.core.cliutil import add_env_flag, on_stop_signals
from apt_energy.core.errors import ConfigError
from apt_energy.core.metrics import serve_if_enabled

from apt_energy import config


def part(text: str) -> Part:
    try:
        return Part.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "bridge", help="forward MQTT readings, status and meta to Kafka (no loss, dead letters)",
        description="Subscribes to <prefix>/... with a persistent MQTT v5 session and acknowledges each message "
                    "only after Kafka confirms it; input it cannot forward goes to the dead-letter topic with an "
                    "error.reason header. Split the load with --part i/n: part i forwards every n-th building "
                    "(part 0 also every topic outside the scheme); each part is a process of its own. Topics: "
                    "kafka.readings_topic, kafka.devices_topic, kafka.dead_letter_topic (env APT_ENERGY_KAFKA_*).")
    add_env_flag(p, "--part", "APT_ENERGY_BRIDGE_PART", default=Part(), type=part,
                 help="run part i of n (0/2 and 1/2: two bridges, each owning half the buildings)")
    add_env_flag(p, "--client-id", "APT_ENERGY_BRIDGE_CLIENT_ID", default=None,
                 help="MQTT client id of part 0/1, fixed so the broker keeps its session; part i of n>1 connects "
                      "as <client-id>-<i>of<n> (default bridge.client_id)")
    add_env_flag(p, "--group", "APT_ENERGY_BRIDGE_GROUP", default=None,
                 help="shared-subscription group, only with bridge.shared_subscription: true (default bridge.group)")
    p.add_argument("--stats-file", type=Path, default=None,
                   help="write the counters here (default <run dir>/bridge/<client id>.json)")
    p.add_argument("--stats", action="store_true",
                   help="print the counters of running bridges (from their stats files) and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = config.load()
    stats_dir = settings.run_dir / "bridge"
    if args.stats:
        files = sorted(stats_dir.glob("*.json"))
        if not files:
            print(f"no bridge stats in {stats_dir} (is a bridge running?)")
            return 1
        for f in files:
            data = json.loads(f.read_text())
            age = time.time() - data.pop("updated", 0)
            shown = "  ".join(f"{k} {v}" if isinstance(v, bool) else f"{k} {v:,}" for k, v in data.items())
            print(f"{f.stem}: {shown}  (updated {age:.0f}s ago)")
        return 0
    if args.group:
        settings = dataclasses.replace(settings, bridge=dataclasses.replace(settings.bridge, group=args.group))
    client_id = part_client_id(args.client_id or settings.bridge.client_id, args.part)
    stats_dir.mkdir(parents=True, exist_ok=True)
    bridge = Bridge.from_settings(settings, part=args.part, client_id=args.client_id,
                                  stats_path=args.stats_file or stats_dir / f"{client_id}.json")
    on_stop_signals(bridge.stop)
    m = settings.metrics
    broker_sys = BrokerSys(mqtt_options(settings), client_id=f"{client_id}-sys") if m.enabled else None
    server = serve_if_enabled(m, m.bridge_port + args.part.index,
                              lambda: bridge_samples(bridge.stats) + (broker_sys.samples() if broker_sys else []),
                              constant={"part": f"{args.part.index}/{args.part.count}"})
    if broker_sys is not None:
        broker_sys.start()
    try:
        bridge.run()
    finally:
        if broker_sys is not None:
            broker_sys.stop()
        if server is not None:
            server.close()
    return 0
