"""The project's one exponential backoff: bounded for any number of attempts, jittered where many wait at once.

Every retry loop of the pipeline uses it — the devices' and the bridge's reconnects (:class:`Backoff`,
jittered so a restarted broker is not hit by every client in the same second), the stream job's
database retries, the notifier's passes and the supervisor's restarts (:meth:`BackoffPolicy.ceiling`,
plain). A long outage means an unbounded attempt count: the exponent therefore stops growing once the
cap is reached, so attempt 10,000 (or 10^12) costs the same arithmetic as attempt 10 and never
overflows a float (``base * 2 ** 1024`` does).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

__all__ = ["RECONNECT", "Backoff", "BackoffPolicy"]


@dataclass(frozen=True)
class BackoffPolicy:
    """``base_s · 2^attempt`` seconds, capped at ``cap_s``; with ``jitter`` a delay is drawn from
    ``[d/2, d]`` (half jitter: never shorter than half the step, so the backoff still backs off)."""

    base_s: float
    cap_s: float
    jitter: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base_s) and math.isfinite(self.cap_s) and 0 < self.base_s <= self.cap_s):
            raise ValueError(f"backoff needs finite 0 < base_s <= cap_s, got base_s={self.base_s} cap_s={self.cap_s}")

    @property
    def doublings(self) -> int:
        """Attempts after which the cap is reached; the exponent never exceeds this."""
        return max(0, math.ceil(math.log2(self.cap_s) - math.log2(self.base_s)))  # no overflow of cap/base

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay before retry number ``attempt`` (0 = the first retry)."""
        if attempt < 0:
            raise ValueError(f"backoff attempt must be >= 0, got {attempt}")
        if attempt >= self.doublings:
            return self.cap_s
        return min(self.cap_s, math.ldexp(self.base_s, attempt))   # below the cap here: cannot overflow

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay to wait: :meth:`ceiling`, jittered when the policy says so."""
        top = self.ceiling(attempt)
        return rng.uniform(top / 2, top) if self.jitter else top


#: Reconnects of the simulated devices (the default of :class:`Backoff`).
RECONNECT = BackoffPolicy(base_s=0.5, cap_s=30.0, jitter=True)


@dataclass
class Backoff:
    """A retry counter over a :class:`BackoffPolicy`: ``next_delay`` after each failure, ``reset`` after a
    success. ``base_s``/``cap_s`` build a jittered policy; ``policy`` replaces them."""

    base_s: float = RECONNECT.base_s
    cap_s: float = RECONNECT.cap_s
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)
    policy: BackoffPolicy | None = None
    rule: BackoffPolicy = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rule = self.policy or BackoffPolicy(base_s=self.base_s, cap_s=self.cap_s, jitter=True)

    def next_delay(self) -> float:
        """The delay before the next attempt (and count it)."""
        delay = self.rule.delay(self.attempt, self.rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """After a success: the next failure waits ``base_s`` again."""
        self.attempt = 0
