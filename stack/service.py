"""What every native service offers the stack: start, stop, report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    endpoint: str
    detail: str = ""
    pid: int | None = None

    @property
    def state(self) -> str:
        if self.healthy:
            return "healthy"
        return "running, unhealthy" if self.running else "stopped"


class Service(Protocol):
    name: str

    @property
    def log_file(self) -> Path: ...

    def up(self) -> None:
        """Start if not running (idempotent) and wait until healthy."""

    def down(self) -> None:
        """Stop it if this stack started it; leave anything else alone."""

    def status(self) -> ServiceStatus: ...
