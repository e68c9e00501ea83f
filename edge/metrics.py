"""The fleet's counters as Prometheus samples (read at scrape time from ``Fleet.stats()``)."""

from __future__ import annotations

from apt_energy.core.metrics import Sample
from apt_energy.edge.fleet import FleetStats

__all__ = ["fleet_samples"]


def fleet_samples(stats: FleetStats) -> list[Sample]:
    """``apt_fleet_*``: readings generated / acknowledged by the broker / dropped, buffer, devices online."""
    return [
        Sample("fleet_generated", "counter", "readings the simulated devices generated", float(stats.generated)),
        Sample("fleet_acked", "counter", "readings the broker acknowledged (PUBACK)", float(stats.acked)),
        Sample("fleet_dropped", "counter", "readings dropped (a device buffer overflowed)", float(stats.dropped)),
        Sample("fleet_bad_commands", "counter", "commands refused by the devices", float(stats.bad_commands)),
        Sample("fleet_buffered", "gauge", "readings waiting in the devices' buffers", float(stats.buffered)),
        Sample("fleet_devices", "gauge", "simulated devices", float(stats.devices)),
        Sample("fleet_online", "gauge", "devices connected to the broker", float(stats.online)),
        Sample("fleet_sim_time_seconds", "gauge", "the simulated clock (Unix time)", stats.sim_time.timestamp()),
    ]
