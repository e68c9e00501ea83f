"""Alert delivery: the ``alert_notifications`` outbox and the notifier that posts it to Slack, each
alert once, whatever Slack answers."""

from __future__ import annotations

from apt_energy.alerts.message import Message, MessageStyle, render, render_digest
from apt_energy.alerts.notifier import Notifier, NotifierOptions
from apt_energy.alerts.outbox import Notice, OutboxState
from apt_energy.alerts.slack import (
    BotTransport,
    ConsoleTransport,
    Posted,
    PostFailed,
    Transport,
    WebhookTransport,
    destination,
    transport_for,
)

__all__ = ["BotTransport", "ConsoleTransport", "Message", "MessageStyle", "Notice", "Notifier", "NotifierOptions",
           "OutboxState", "PostFailed", "Posted", "Transport", "WebhookTransport", "destination", "render",
           "render_digest", "transport_for"]
