"""Simulated household devices: the consumption model, one device, and a fleet on one event loop."""

from __future__ import annotations

from apt_energy.edge.commands import parse_command
from apt_energy.edge.device import Device
from apt_energy.edge.fleet import Fleet, FleetOptions, FleetStats
from apt_energy.edge.ledger import Ledger
from apt_energy.edge.profile import FleetModel

__all__ = [
           "Device",
           "Fleet",
           "FleetModel",
           "FleetOptions",
           "FleetStats",
           "Ledger",
           "parse_command",
]
