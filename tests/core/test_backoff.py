"""The one backoff, and every retry loop that uses it, past 10,000 attempts (a long outage).

``base * 2 ** attempt`` overflowed a float at attempt 1,024: a bridge or a fleet that waited out a long broker
outage died of the wait. Each user is driven through its own code path, not just the policy it names."""

from __future__ import annotations

import random
import threading

import psycopg
import pytest
from apt_energy.alerts.message import MessageStyle
from apt_energy.alerts.notifier import Notifier, NotifierOptions
from apt_energy.alerts.slack import WebhookTransport
from apt_energy.app.supervise import RestartPolicy, restart_delay
from apt_energy.bridge.mqtt_source import RECONNECT_BACKOFF
from apt_energy.core.backoff import RECONNECT, Backoff, BackoffPolicy
from apt_energy.spark.job import DB_RETRY, with_retries

pytestmark = pytest.mark.unit

LONG = 10_001


@pytest.mark.parametrize("policy", [RECONNECT, RECONNECT_BACKOFF, DB_RETRY, RestartPolicy().backoff,
                                    BackoffPolicy(base_s=1e-9, cap_s=1e300)], ids=str)
def test_every_policy_stays_within_its_cap_for_any_attempt(policy: BackoffPolicy) -> None:
    rng = random.Random(7)
    for attempt in (*range(LONG), 10**6, 10**12):
        top = policy.ceiling(attempt)
        assert policy.base_s <= top <= policy.cap_s
        assert top / 2 <= policy.delay(attempt, rng) <= top
    assert policy.ceiling(LONG) == policy.cap_s


def test_the_ceiling_doubles_until_the_cap() -> None:
    p = BackoffPolicy(base_s=0.5, cap_s=10.0)
    assert [p.ceiling(a) for a in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize("bad", [(0, 1), (2, 1), (-1, 5), (1, float("inf")), (float("nan"), 1)])
def test_a_policy_without_a_finite_positive_range_is_refused(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="base_s"):
        BackoffPolicy(base_s=bad[0], cap_s=bad[1])


def test_device_and_bridge_reconnect_counters_survive_a_long_outage() -> None:
    for b in (Backoff(rng=random.Random(1)), Backoff(policy=RECONNECT_BACKOFF, rng=random.Random(2))):
        delays = [b.next_delay() for _ in range(LONG)]
        assert b.attempt == LONG and max(delays) <= b.rule.cap_s and min(delays[20:]) >= b.rule.cap_s / 2
        b.reset()
        assert b.next_delay() <= b.rule.base_s


def test_supervisor_restart_delay_is_capped_after_10000_crashes_in_its_window() -> None:
    policy = RestartPolicy(max_crashes=10**9, window_s=1e9)
    crashes = [float(t) for t in range(LONG)]
    assert restart_delay(crashes, float(LONG), policy) == policy.cap_s
    assert restart_delay(crashes, float(LONG), RestartPolicy()) is None   # the crash-loop rule still holds


class CountingStop(threading.Event):
    """A stop event whose waits return at once and are recorded; set after ``limit`` waits."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        if len(self.waits) >= self.limit:
            self.set()
        return self.is_set()


def test_the_stream_jobs_database_retries_outlast_10000_failures() -> None:
    stop = CountingStop(limit=10**9)
    failures = iter(range(LONG))

    def action() -> str:
        if next(failures, None) is not None:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return "committed"

    assert with_retries(action, what="merge", stop=stop) == "committed"
    assert len(stop.waits) == LONG and max(stop.waits) == DB_RETRY.cap_s and stop.waits[0] == DB_RETRY.base_s


def test_the_notifier_reconnects_to_postgresql_past_10000_failures() -> None:
    def connect() -> psycopg.Connection:
        raise psycopg.OperationalError("connection refused")

    opts = NotifierOptions(poll_s=2.0, max_backoff_s=60.0)
    notifier = Notifier(connect, WebhookTransport("http://127.0.0.1:9/unused"), MessageStyle("en", {}, {}),
                        options=opts)
    notifier.stop_event = stop = CountingStop(limit=LONG)
    notifier.run()
    assert notifier.stats.failures == LONG
    assert stop.waits[:3] == [2.0, 4.0, 8.0] and max(stop.waits) == 60.0 and stop.waits[-1] == 60.0
