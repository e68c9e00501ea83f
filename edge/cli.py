"""``apt-energy edge``: start N simulated household devices in this process."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from datetime import timedelta
from pathlib import Path

from apt_energy.config import Household, Settings
from apt_energy.core.cliutil import add_env_flag, add_months, duration, in_zone, local_date, on_stop_signals
from apt_energy.core.errors import ConfigError
from apt_energy.core.metrics import serve_if_enabled
from apt_energy.edge.fleet import Fleet, FleetOptions
from apt_energy.edge.metrics import fleet_samples
from apt_energy.edge.shards import MembershipWatch, Replicas, assign, discover, settle

from apt_energy import config

logger = logging.getLogger(__name__)


AUTO = "auto"
# A replica checks the replica set this often, and a starting one waits until the set has been stable
# this long: longer than the others take to notice a change and stop (see edge/shards.py).
WATCH_POLL_S = 5.0
SETTLE_S = 20.0


def shard(text: str) -> tuple[int, int] | str:
    if text == AUTO:
        return AUTO
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise argparse.ArgumentTypeError(f"expected i/n with 0 ≤ i < n, e.g. 0/4, or auto, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def buildings(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected building numbers like 1,2,11, got {text!r}") from None


def select_households(settings: Settings, *, count: int | None, only: tuple[int, ...] = (),
                      part: tuple[int, int] = (0, 1)) -> list[Household]:
    """The households this process simulates: a building filter, the first ``count``, then shard i of n
    (every n-th, so shards stay balanced across buildings)."""
    chosen = [h for h in settings.complex.households() if not only or h.building in only]
    if count is not None:
        chosen = chosen[:count]
    i, n = part
    return chosen[i::n]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_env_flag(p, "--households", "APT_ENERGY_EDGE_HOUSEHOLDS", default=840, type=int,
                 help="how many households (the first N of the complex)")
    add_env_flag(p, "--buildings", "APT_ENERGY_EDGE_BUILDINGS", default=(), type=buildings,
                 help="only these buildings, e.g. 1,2,11")
    add_env_flag(p, "--shard", "APT_ENERGY_EDGE_SHARD", default=(0, 1), type=shard,
                 help="run shard i of n (every n-th household), e.g. 0/4; auto: one of the replicas of a "
                      "compose service (docker compose up --scale edge=N), found through Docker's DNS")
    add_env_flag(p, "--service", "APT_ENERGY_EDGE_SERVICE", default="edge",
                 help="with --shard auto: the compose service whose replicas split the households")
    add_env_flag(p, "--start", "APT_ENERGY_EDGE_START", default=local_date("2024-01-01"), type=local_date,
                 help="simulated start, a date in the complex's time zone, an ISO time, or now")
    p.add_argument("--months", type=int, default=None, help="simulate this many months from --start (default 12)")
    p.add_argument("--until", type=local_date, default=None, help="or simulate until this date")
    add_env_flag(p, "--speed", "APT_ENERGY_EDGE_SPEED", default=0.0, type=float,
                 help="simulated seconds per real second; 1 = real time, 0 = as fast as the pipeline takes")
    add_env_flag(p, "--interval", "APT_ENERGY_EDGE_INTERVAL", default=3600, type=duration,
                 help="reporting interval, e.g. 15m, 1h, 6h")
    add_env_flag(p, "--seed", "APT_ENERGY_SIMULATION_SEED", default=None, type=int,
                 help="random seed (default: simulation.seed in config)")
    add_env_flag(p, "--ledger", "APT_ENERGY_EDGE_LEDGER", default=None, type=Path,
                 help="write what was published per household, meter and month to this JSON file")
    add_env_flag(p, "--state", "APT_ENERGY_EDGE_STATE", default=None, type=Path,
                 help="sequence numbers survive restarts here (default .run/edge/state-<i>-of-<n>.json)")
    add_env_flag(p, "--buffer", "APT_ENERGY_EDGE_BUFFER", default=10_000, type=int,
                 help="readings a disconnected device keeps (oldest dropped first, counted)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "edge", help="run N simulated household devices (MQTT) in one process",
        description="Each household is one device (its wallpad gateway with electricity, heating and water "
                    "meters) with its own MQTT connection, publishing QoS 1 readings to "
                    "<prefix>/<complex>/<building>/<unit>/<meter>/reading. Broker: mqtt.host/mqtt.port "
                    "(env APT_ENERGY_MQTT_HOST, APT_ENERGY_MQTT_PORT).")
    add_arguments(p)
    p.set_defaults(func=run)
    r = sub.add_parser(
        "replace-meter", help="tell a device that one of its meters was replaced (new life, seq 0, new register)",
        description="Publishes {\"replace\": METER} on the device's .../cmd topic (QoS 1, not retained) as the "
                    "operator identity (mqtt.operator_user, APT_ENERGY_MQTT_OPERATOR_PASSWORD). The gateway "
                    "continues the meter under a new life and announces it in its retained meta.")
    r.add_argument("device", help="device id, e.g. hanbit-01-1001")
    r.add_argument("meter", help="electricity, heating or water")
    r.add_argument("--serial", default=None, help="the new meter's serial number (default: made up by the device)")
    r.add_argument("--total", type=float, default=None,
                   help="the new meter's start register in its unit (default: a small one)")
    r.set_defaults(func=replace_meter)


def options_from_args(args: argparse.Namespace, settings: Settings, part: tuple[int, int]) -> FleetOptions:
    tz = settings.complex.tz
    start = in_zone(args.start, tz)
    until = in_zone(args.until, tz) if args.until is not None else add_months(
        start, 12 if args.months is None else args.months, tz)
    if until <= start:
        raise ConfigError("--until/--months must end after --start")
    if not args.speed >= 0 or args.speed == float("inf"):
        raise ConfigError(f"--speed (APT_ENERGY_EDGE_SPEED) must be 0 (as fast as the pipeline takes) or a positive "
                          f"number of simulated seconds per real second, got {args.speed:g}")
    i, n = part
    return FleetOptions(start=start, until=until, interval_s=args.interval, speed=args.speed,
                        buffer_limit=args.buffer, ledger_path=args.ledger,
                        state_path=args.state or settings.run_dir / "edge" / f"state-{i}-of-{n}.json")


def replace_meter(args: argparse.Namespace) -> int:
    topic = send_replace(config.load(), args.device, args.meter, serial=args.serial, total=args.total)
    print(f"sent replace {args.meter} to {args.device} ({topic})")
    return 0


def send_replace(settings: Settings, device_id: str, meter: str, *, serial: str | None = None,
                 total: float | None = None) -> str:
    """Publish the ``replace`` command to one device as the operator; returns the topic."""
    from apt_energy.app.reset import mqtt_session
    from apt_energy.core import topics
    from apt_energy.edge.commands import replace_command

    household = next((h for h in settings.complex.households() if h.device_id == device_id), None)
    if household is None:
        raise ConfigError(f"unknown device {device_id!r} (expected an id like hanbit-01-1001)")
    if meter not in settings.energy:
        raise ConfigError(f"unknown meter {meter!r} (expected one of {', '.join(settings.energy)})")
    topic = f"{topics.device_base(settings.mqtt.topic_prefix, household)}/cmd"
    with mqtt_session(settings, f"operator-replace-{device_id}", "operator") as client:
        info = client.publish(topic, replace_command(meter, serial=serial, total=total), qos=1)
        info.wait_for_publish(10)
        if not info.is_published():
            raise ConfigError(f"the broker did not acknowledge the command on {topic} "
                              f"(broker {settings.mqtt.host}:{settings.mqtt.port})")
    return topic


def run(args: argparse.Namespace) -> int:
    settings = config.load()
    if args.seed is not None:
        import dataclasses

        settings = dataclasses.replace(settings, simulation=dataclasses.replace(settings.simulation, seed=args.seed))
    watch: MembershipWatch | None = None
    if args.shard == AUTO:
        def resolve() -> Replicas:
            return discover(args.service)

        logger.info("edge waiting %.0fs for a stable replica set of service=%s", SETTLE_S, args.service)
        replicas = settle(resolve, stable_s=SETTLE_S)
        part = assign(replicas)
        logger.info("edge replica=%s shard=%d/%d", replicas[0], *part)
    else:
        part = args.shard
    households = select_households(settings, count=args.households, only=args.buildings, part=part)
    if not households:
        raise ConfigError("no households selected (check --households, --buildings, --shard)")
    options = options_from_args(args, settings, part)
    fleet = Fleet.from_settings(settings, households, options)
    if fleet.sim_time + timedelta(seconds=options.interval_s) > options.until:
        # the devices keep running time: a finished run started again has nothing left to generate
        print(f"apt-energy edge: the devices of {options.state_path} already reached "
              f"{fleet.sim_time.isoformat()}; nothing left to simulate until {options.until.isoformat()} "
              f"(a later --until continues them, another --state starts new devices)", file=sys.stderr)
    on_stop_signals(fleet.stop)
    if args.shard == AUTO:
        def changed(seen: Replicas) -> None:
            logger.warning("edge replicas changed n=%d→%d: stopping so the restart re-splits the households",
                           part[1], len(seen[1]))
            fleet.stop()

        watch = MembershipWatch(resolve, replicas, poll_s=WATCH_POLL_S, on_change=changed)
        watch.start()
    logger.info("edge fleet devices=%d shard=%d/%d start=%s until=%s interval=%ds speed=%s broker=%s:%d",
                len(households), *part, options.start.isoformat(), options.until.isoformat(), options.interval_s,
                options.speed or "max", settings.mqtt.host, settings.mqtt.port)
    m = settings.metrics
    server = serve_if_enabled(m, m.fleet_port + part[0], lambda: fleet_samples(fleet.stats()),
                              constant={"shard": f"{part[0]}/{part[1]}"})
    try:
        stats = fleet.run()
    finally:
        if server is not None:
            server.close()
    print(stats.line())
    if watch is not None and watch.changed:
        print("apt-energy edge: the replica set changed; exiting (code 3) so the restart takes its new share")
        return 3
    return 0 if stats.dropped == 0 else 4
