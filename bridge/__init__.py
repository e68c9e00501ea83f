"""MQTT → Kafka bridge: shared subscription, acknowledgement after Kafka delivery, dead letters."""

from __future__ import annotations

from bridge.acks import AckQueue
from bridge.bridge import Bridge, BridgeError
from bridge.routing import Route, route
from bridge.stats import BridgeStats

__all__ = ["AckQueue", "Bridge", "BridgeError", "BridgeStats", "Route", "route"]
