"""The native stack: real Mosquitto, PostgreSQL and Kafka on this machine, without Docker."""

from __future__ import annotations

from stack.errors import StackError
from stack.native import NativeStack
from stack.service import ServiceStatus

__all__ = ["NativeStack", "ServiceStatus", "StackError"]
