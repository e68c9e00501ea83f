"""Quiet hours: per severity, a daily window in the complex's time zone in which new alert messages wait
(warnings wait until morning); a severity without a window (critical: a leak) never waits."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from apt_energy.core.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["QuietHours", "parse_window"]

_WINDOW = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")


def parse_window(text: str, *, key: str = "alerts.quiet_hours") -> tuple[time, time]:
    """``"22:00-07:00"`` → (22:00, 07:00); a window may cross midnight."""
    m = _WINDOW.fullmatch(text.strip())
    if not m:
        raise ConfigError(f"{key}: expected a window like 22:00-07:00, got {text!r}")
    start, end = time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4]))
    if start == end:
        raise ConfigError(f"{key}: an empty window {text!r} (start equals end)")
    return start, end


@dataclass(frozen=True)
class QuietHours:
    """Severity → quiet window, read in ``tz``."""

    tz: ZoneInfo
    windows: Mapping[str, tuple[time, time]] = field(default_factory=dict)

    @classmethod
    def parse(cls, tz: str, windows: Mapping[str, str]) -> QuietHours:
        return cls(ZoneInfo(tz), {sev: parse_window(w, key=f"alerts.quiet_hours.{sev}") for sev, w in windows.items()})

    def asleep(self, now: datetime) -> tuple[str, ...]:
        """The severities whose new messages wait at ``now`` (timezone-aware)."""
        local = now.astimezone(self.tz).time()
        return tuple(sorted(sev for sev, (start, end) in self.windows.items()
                            if (start <= local < end if start < end else local >= start or local < end)))
