"""MQTT → Kafka bridge: shared subscription, acknowledgement after Kafka delivery, dead letters."""

from __future__ import annotations

from apt_energy.bridge.acks import AckQueue
from apt_energy.bridge.bridge import Bridge
from apt_energy.bridge.routing import Route, route
from apt_energy.bridge.stats import BridgeStats

__all__ = ["AckQueue", "Bridge", "BridgeStats", "Route", "route"]
