"""Reconnect backoff shared by the devices and the bridge."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential reconnect backoff with full jitter, so a restarted broker is not hit all at once."""

    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        delay = min(self.cap_s, self.base_s * (2 ** self.attempt))
        self.attempt += 1
        return self.rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0
