"""The notifier's counters and the outbox's states as Prometheus samples."""

from __future__ import annotations

from collections.abc import Mapping

from apt_energy.alerts.notifier import NotifierStats
from apt_energy.core.metrics import Sample

__all__ = ["notifier_samples"]


def notifier_samples(stats: NotifierStats, outbox: Mapping[str, int] | None = None) -> list[Sample]:
    """``apt_notifier_*``; ``outbox`` (state → rows, read from ``alert_notifications``) gives the in-doubt
    (``sending`` past its lease is reconciled, ``failed`` needs a person) and pending counts."""
    out = [
        Sample("notifier_sent", "counter", "notifications posted and marked delivered", float(stats.sent)),
        Sample("notifier_reconciled", "counter", "in-doubt posts found in the channel's history (not re-sent)",
               float(stats.reconciled)),
        Sample("notifier_failures", "counter", "failed passes (Slack or PostgreSQL trouble)", float(stats.failures)),
        Sample("notifier_passes", "counter", "completed delivery passes", float(stats.passes)),
    ]
    for state, n in sorted((outbox or {}).items()):
        out.append(Sample("notifier_outbox", "gauge", "alert notifications by state", float(n), {"state": state}))
    return out
