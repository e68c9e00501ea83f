"""``python -m tests.chaos.edge_process``: an edge fleet of chosen households as a process of its own, so a
chaos scenario can kill -9 it and start the very same command again (``apt-energy edge`` selects the first
N households; a scenario needs households of its own). Settings come from the environment, as for the
pipeline's services."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from apt_energy.core import logs
from apt_energy.core.cliutil import on_stop_signals
from apt_energy.edge.fleet import Fleet, FleetOptions

from apt_energy import config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", required=True)
    p.add_argument("--start", type=datetime.fromisoformat, required=True)
    p.add_argument("--until", type=datetime.fromisoformat, required=True)
    p.add_argument("--interval", type=int, default=3600)
    p.add_argument("--speed", type=float, default=0.0)
    p.add_argument("--ledger", type=Path, required=True)
    p.add_argument("--state", type=Path, required=True)
    args = p.parse_args(argv)
    logs.configure(None)
    settings = config.load()
    wanted = set(args.devices.split(","))
    households = [h for h in settings.complex.households() if h.device_id in wanted]
    fleet = Fleet.from_settings(settings, households, FleetOptions(
        start=args.start, until=args.until, interval_s=args.interval, speed=args.speed, ledger_path=args.ledger,
        state_path=args.state, progress_s=1.0, drain_timeout_s=240.0, checkpoint_s=0.5))
    on_stop_signals(fleet.stop)
    stats = fleet.run()
    print(stats.line(), flush=True)
    return 0 if stats.dropped == 0 else 4


if __name__ == "__main__":
    sys.exit(main())
