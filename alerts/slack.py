"""Where alerts go: a Slack bot (``chat.postMessage``), an incoming webhook, or the console.

A post ends one of three ways, and the notifier treats them differently:

- *posted*: Slack answered 200 ok (:class:`Posted` carries channel and ts);
- *not posted*: a 429 (``retry_after_s`` says when to try again), a 4xx or ``ok: false``, a refused
  connection, an unresolvable host — Slack certainly did not take the message;
- *in doubt*: a 5xx, a timeout, a connection lost after the request left — Slack may have taken it.

The posting client never retries by itself (slack_sdk's retry handlers would re-post an in-doubt message:
that is how one digest reached a channel four times). A bot transport can check what the channel already
holds (``conversations.history`` with the notification ids in message metadata). A webhook cannot: an
in-doubt webhook post is never repeated (at most once) and its rows end ``failed``, visible in
``apt-energy alerts`` and Grafana.
"""

from __future__ import annotations

import http.client
import logging
import socket
import urllib.error
from typing import Any, NamedTuple, Protocol

from apt_energy.alerts.message import Message
from apt_energy.alerts.outbox import OutboxState
from apt_energy.config import Settings
from apt_energy.core.errors import ServiceError
from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

logger = logging.getLogger(__name__)

__all__ = ["METADATA_EVENT", "BotTransport", "ConsoleTransport", "HistoryUnreadable", "PostFailed", "Posted",
           "Transport", "WebhookTransport", "destination", "transport_for"]

METADATA_EVENT = "apt_energy_alert"


class Posted(NamedTuple):
    """Where a message landed: Slack's channel id and message ts (``None`` for webhook and console)."""

    channel: str
    ts: str | None


class PostFailed(ServiceError):
    """A post that did not succeed, with what is known about it: ``in_doubt`` (Slack may have accepted it)
    and, for a 429, ``retry_after_s``."""

    def __init__(self, message: str, *, in_doubt: bool, retry_after_s: float | None = None) -> None:
        super().__init__(message, service="slack")
        self.in_doubt = in_doubt
        self.retry_after_s = retry_after_s


class HistoryUnreadable(ServiceError):
    """The channel's history cannot be read, so in-doubt posts cannot be checked; ``fix`` says in one line
    what the operator changes (a scope, an invitation, the channel id)."""

    def __init__(self, message: str, *, fix: str) -> None:
        super().__init__(message, service="slack")
        self.fix = fix


# Slack's error codes for a history the bot may not read → the one-line fix.
_HISTORY_FIXES = {
    "channel_not_found": "invite the bot to the channel (/invite @your-bot) or set slack.channel to its id (C0123ABC)",
    "not_in_channel": "invite the bot to the channel (/invite @your-bot)",
    "missing_scope": "add the bot scopes channels:history and groups:history (private), then reinstall the app",
    "invalid_auth": "SLACK_BOT_TOKEN is not valid: set the bot token (xoxb-…) of the installed app",
    "not_authed": "SLACK_BOT_TOKEN is not valid: set the bot token (xoxb-…) of the installed app",
}
FIX_HISTORY_OUTAGE = "none needed if Slack is only down for a while; else check that slack.com is reachable"


class Transport(Protocol):
    """Posts messages carrying notification ids; may be able to find them again afterwards."""

    kind: str                      # bot | webhook | console (notifier_status.transport)
    delivered_state: OutboxState   # what a delivered row becomes (sent, or console)
    can_read_history: bool         # True: in-doubt rows are checked; False: they end failed (at most once)
    paced: bool                    # Slack allows about one message per second per channel
    timeout_s: float               # longest wait for one answer; a claim's lease must outlast a post
    can_edit: bool                 # True: a lifecycle step edits the alert's message in place (chat.update)

    @property
    def destination(self) -> str:
        """Where this transport posts, in words (no secrets)."""

    def post(self, message: Message, ids: list[int]) -> Posted:
        """Post once (no retries); raise :class:`PostFailed` saying whether it is in doubt."""

    def update(self, where: Posted, message: Message) -> Posted:
        """Replace the message at ``where`` (idempotent: repeating it is harmless)."""

    def find_posted(self, since: float) -> dict[int, Posted]:
        """Notification id → where our message carrying it landed, for messages since ``since`` (epoch s)."""


def _never_sent(exc: BaseException) -> bool:
    """Failures that happen before a request can reach Slack: the post certainly did not happen."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, ConnectionRefusedError | socket.gaierror)


def _failure(what: str, exc: BaseException) -> PostFailed:
    if isinstance(exc, SlackApiError):
        status = int(exc.response.status_code)
        error = exc.response.get("error")
        if status == 429:
            return PostFailed(f"{what}: rate limited", in_doubt=False,
                              retry_after_s=_retry_after(exc.response.headers))
        return PostFailed(f"{what}: HTTP {status} {error or ''}".strip(), in_doubt=status >= 500)
    if isinstance(exc, OSError | http.client.HTTPException):
        return PostFailed(f"{what}: {exc or type(exc).__name__}", in_doubt=not _never_sent(exc))
    return PostFailed(f"{what}: {exc}", in_doubt=False)   # SlackRequestError: refused before sending


def _retry_after(headers: Any) -> float:
    for key, value in dict(headers or {}).items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(float(raw), 0.0)
            except (TypeError, ValueError):
                break
    return 1.0


class BotTransport:
    """``chat.postMessage`` to ``channel`` (a name like ``#alerts`` or an id), ids in message metadata.

    The channel's id (needed to read its history) comes from the first answer to a post that Slack returns
    (it names the channel by id), else from ``conversations.list``; a private channel the bot cannot list
    (no ``groups:read``) or a name the list does not show is learnt by posting one short status line."""

    kind = "bot"
    delivered_state = OutboxState.SENT
    can_read_history = True
    can_edit = True
    paced = True

    def __init__(self, token: str, channel: str, *, base_url: str | None = None, timeout_s: float = 10) -> None:
        self.timeout_s = timeout_s
        common: dict[str, Any] = {"token": token, "timeout": timeout_s}
        if base_url:
            common["base_url"] = base_url
        # Posting must not retry on its own (an in-doubt post retried is a duplicate); reads may.
        self._poster = WebClient(**common, retry_handlers=[])
        self._reader = WebClient(**common, retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=5),
            ServerErrorRetryHandler(max_retry_count=2)])
        self.channel = channel
        self.channel_id: str | None = channel if channel[:1] in ("C", "G") and channel[1:].isalnum() else None

    def post(self, message: Message, ids: list[int]) -> Posted:
        try:
            resp = self._poster.chat_postMessage(
                channel=self.channel_id or self.channel, text=message.text, blocks=message.blocks,
                unfurl_links=False, metadata={"event_type": METADATA_EVENT,
                                              "event_payload": {"notification_ids": ids}})
        except (SlackClientError, OSError, http.client.HTTPException) as exc:
            raise _failure("chat.postMessage", exc) from exc
        self.channel_id = str(resp["channel"])
        return Posted(str(resp["channel"]), str(resp["ts"]))

    @property
    def destination(self) -> str:
        return f"Slack channel {self.channel} by the bot (SLACK_BOT_TOKEN)"

    def update(self, where: Posted, message: Message) -> Posted:
        try:
            resp = self._poster.chat_update(channel=where.channel, ts=where.ts or "", text=message.text,
                                            blocks=message.blocks)
        except (SlackClientError, OSError, http.client.HTTPException) as exc:
            raise _failure("chat.update", exc) from exc
        return Posted(str(resp.get("channel") or where.channel), str(resp.get("ts") or where.ts))

    def find_posted(self, since: float) -> dict[int, Posted]:
        if self.channel_id is None:
            self.channel_id = self._learn_channel()
        try:
            found: dict[int, Posted] = {}
            cursor = None
            while True:
                resp = self._reader.conversations_history(channel=self.channel_id, oldest=f"{since:.6f}",
                                                          include_all_metadata=True, limit=200, cursor=cursor)
                message: dict[str, Any]
                for message in resp.get("messages", []):
                    meta: dict[str, Any] = message.get("metadata") or {}
                    if meta.get("event_type") == METADATA_EVENT:
                        for nid in meta.get("event_payload", {}).get("notification_ids", []):
                            found[int(nid)] = Posted(self.channel_id, str(message["ts"]))
                cursor = (resp.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return found
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            raise HistoryUnreadable(f"conversations.history of {self.channel}: HTTP {exc.response.status_code} "
                                    f"{error}".strip(), fix=_HISTORY_FIXES.get(error, FIX_HISTORY_OUTAGE)) from exc
        except (SlackClientError, OSError, http.client.HTTPException) as exc:
            raise HistoryUnreadable(f"conversations.history: {exc}", fix=FIX_HISTORY_OUTAGE) from exc

    def _learn_channel(self) -> str:
        """The channel's id: from ``conversations.list``, else from the answer to one status post (Slack
        accepts a name in ``chat.postMessage`` and answers with the id, also for a private channel)."""
        try:
            return self._lookup_channel()
        except ServiceError as exc:
            logger.warning("notifier: %s; learning the channel id from a status post", exc)
        try:
            resp = self._poster.chat_postMessage(
                channel=self.channel, unfurl_links=False,
                text="apt-energy: checking whether alerts whose delivery was in doubt reached this channel")
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            raise HistoryUnreadable(f"channel {self.channel}: chat.postMessage {error}".strip(),
                                    fix=_HISTORY_FIXES.get(error, _HISTORY_FIXES["channel_not_found"])) from exc
        except (SlackClientError, OSError, http.client.HTTPException) as exc:
            raise HistoryUnreadable(f"channel {self.channel}: {exc}", fix=FIX_HISTORY_OUTAGE) from exc
        return str(resp["channel"])

    def _lookup_channel(self) -> str:
        name = self.channel.lstrip("#")
        cursor = None
        while True:
            resp = self._reader.conversations_list(limit=200, cursor=cursor, types="public_channel,private_channel")
            ch: dict[str, Any]
            for ch in resp.get("channels", []):
                if ch.get("name") == name:
                    return str(ch["id"])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                raise ServiceError(f"channel {self.channel} not found (set slack.channel to its id, e.g. C0123ABC)",
                                   service="slack")


class WebhookTransport:
    """An incoming webhook: posts to the webhook's own channel and cannot read it back, so an in-doubt
    post is never repeated — its rows end ``failed`` (at most once for in-doubt rows)."""

    kind = "webhook"
    delivered_state = OutboxState.SENT
    can_read_history = False
    can_edit = False
    paced = True
    destination = "the Slack incoming webhook's channel (SLACK_WEBHOOK_URL)"

    def __init__(self, url: str, *, timeout_s: float = 10) -> None:
        self.timeout_s = timeout_s
        self.client = WebhookClient(url, timeout=int(max(timeout_s, 1)), retry_handlers=[])

    def post(self, message: Message, ids: list[int]) -> Posted:
        try:
            resp = self.client.send(text=message.text, blocks=message.blocks)
        except (SlackClientError, OSError, http.client.HTTPException) as exc:
            raise _failure("webhook", exc) from exc
        if resp.status_code == 429:
            raise PostFailed("webhook: rate limited", in_doubt=False, retry_after_s=_retry_after(resp.headers))
        if resp.status_code != 200:
            raise PostFailed(f"webhook: HTTP {resp.status_code} {resp.body[:100]}", in_doubt=resp.status_code >= 500)
        return Posted("webhook", None)

    def update(self, where: Posted, message: Message) -> Posted:
        return self.post(message, [])

    def find_posted(self, since: float) -> dict[int, Posted]:
        return {}


class ConsoleTransport:
    """No Slack configured: print, and leave the alerts queryable in the database. Printing cannot
    half-fail, so a row claimed but not printed (a crash) is simply printed again."""

    kind = "console"
    delivered_state = OutboxState.CONSOLE
    can_read_history = True
    can_edit = False
    paced = False
    timeout_s = 0.0
    destination = "printed by the notifier (set SLACK_BOT_TOKEN or SLACK_WEBHOOK_URL to post them to Slack)"

    def post(self, message: Message, ids: list[int]) -> Posted:
        print(f"[alert] {message.text}", flush=True)
        return Posted("console", None)

    def update(self, where: Posted, message: Message) -> Posted:
        return self.post(message, [])

    def find_posted(self, since: float) -> dict[int, Posted]:
        return {}


def transport_for(settings: Settings, *, timeout_s: float = 10) -> BotTransport | WebhookTransport | ConsoleTransport:
    """The transport the settings ask for: a bot token wins over a webhook; neither means the console."""
    sec = settings.secrets
    if sec.slack_bot_token:
        return BotTransport(sec.slack_bot_token.reveal(), settings.slack.channel,
                            base_url=sec.slack_base_url or None, timeout_s=timeout_s)
    if sec.slack_webhook_url:
        return WebhookTransport(sec.slack_webhook_url.reveal(), timeout_s=timeout_s)
    return ConsoleTransport()


def destination(settings: Settings) -> str:
    """Where the notifier sends alerts with these settings, in words (the demo's closing hints)."""
    sec = settings.secrets
    if sec.slack_bot_token:
        via = f" via {sec.slack_base_url}" if sec.slack_base_url else ""
        return f"posted to Slack channel {settings.slack.channel} by the bot (SLACK_BOT_TOKEN){via}"
    if sec.slack_webhook_url:
        return "posted to the Slack incoming webhook's channel (SLACK_WEBHOOK_URL)"
    return "printed by the notifier (set SLACK_BOT_TOKEN or SLACK_WEBHOOK_URL to post them to Slack)"
