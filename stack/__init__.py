"""The native stack: real Mosquitto, PostgreSQL and Kafka on this machine, without Docker."""

from __future__ import annotations

from apt_energy.stack.native import NativeStack
from apt_energy.stack.service import ServiceStatus

__all__ = ["NativeStack", "ServiceStatus"]
