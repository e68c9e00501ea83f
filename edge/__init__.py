"""Simulated household devices: the consumption model, one device, and a fleet on one event loop."""

from __future__ import annotations

from edge.commands import CommandError, parse_command
from edge.device import Device
from edge.fleet import Fleet, FleetOptions, FleetStats
from edge.ledger import Ledger
from edge.profile import FleetModel

__all__ = ["CommandError", "Device", "Fleet", "FleetModel", "FleetOptions", "FleetStats", "Ledger",
           "parse_command"]
