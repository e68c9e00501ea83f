"""Alert delivery and the alert's case: the ``alert_notifications`` outbox and the notifier that posts it to
Slack, each alert once, whatever Slack answers; acknowledge / assign / resolve / escalate steps
(:mod:`~apt_energy.alerts.lifecycle`), Slack's buttons over Socket Mode (:mod:`~apt_energy.alerts.buttons`)
and quiet hours (:mod:`~apt_energy.alerts.quiet`)."""

from __future__ import annotations

from apt_energy.alerts.lifecycle import Outcome, Step
from apt_energy.alerts.message import Message, MessageStyle, digests, render, render_case, render_digest
from apt_energy.alerts.notifier import Notifier, NotifierOptions
from apt_energy.alerts.outbox import Notice, OutboxState
from apt_energy.alerts.quiet import QuietHours
from apt_energy.alerts.slack import (
    BotTransport,
    ConsoleTransport,
    HistoryUnreadable,
    Posted,
    PostFailed,
    Transport,
    WebhookTransport,
    destination,
    transport_for,
)

__all__ = ["BotTransport", "ConsoleTransport", "HistoryUnreadable", "Message", "MessageStyle", "Notice", "Notifier",
           "NotifierOptions", "OutboxState", "Outcome", "PostFailed", "Posted", "QuietHours", "Step", "Transport",
           "WebhookTransport", "destination", "digests", "render", "render_case", "render_digest", "transport_for"]
