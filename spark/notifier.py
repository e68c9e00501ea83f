"""Delivers queued alerts (the ``alert_notifications`` outbox) to Slack, exactly once.

Delivery protocol, per notification:

1. *claim*: ``pending → sending`` is committed **before** the message is posted;
2. *post*: ``chat.postMessage`` carrying the notification ids in Slack message metadata;
3. *mark*: ``sending → sent`` with Slack's ``ts``.

A crash between 2 and 3 leaves rows in ``sending``. On start the notifier *reconciles* them: with a
bot token it reads the channel's recent history and finds its own messages by their metadata, marking
those sent (no second post) and returning the rest to ``pending`` (they were never posted). An
incoming webhook cannot read history, so in-doubt webhook rows are marked ``failed`` rather than
risk a duplicate (at most once) — the choice is explicit and visible in ``apt-energy alerts``.

Slack trouble never blocks the stream: this runs in its own thread with its own connection; 429s are
retried after Retry-After and connection errors/5xx by slack_sdk's retry handlers, then the row goes
back to ``pending`` for a later pass. Many pending alerts go out as one digest (Slack allows about one
message per second per channel).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import psycopg
from apt_energy.config import Settings
from apt_energy.database import conninfo
from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from apt_energy.errors import ServiceError

logger = logging.getLogger(__name__)

METADATA_EVENT = "apt_energy_alert"
MIN_SECONDS_BETWEEN_POSTS = 1.1  # Slack: about one message per second per channel


@dataclass(frozen=True)
class Notice:
    """One queued notification joined with its alert and household."""

    id: int
    kind: str          # raised | resolved
    alert_id: int
    rule: str
    severity: str
    energy_type: str
    period: date
    observed: float
    reference: float
    unit: str
    building: int
    floor: int
    unit_no: int

    @property
    def door(self) -> str:
        return f"{self.floor}{self.unit_no:02d}"


class Transport(Protocol):
    can_reconcile: bool

    def post(self, text: str, blocks: list[dict[str, Any]], ids: list[int]) -> tuple[str, str]:
        """Post; return (channel id, message ts)."""

    def find_posted(self, since: float) -> dict[int, tuple[str, str]]:
        """Notification id → (channel, ts) of our messages posted since ``since`` (epoch seconds)."""


def _retry_handlers() -> list[Any]:
    return [ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=5),
            ServerErrorRetryHandler(max_retry_count=2)]


class BotTransport:
    can_reconcile = True

    def __init__(self, token: str, channel: str, base_url: str | None = None) -> None:
        kwargs: dict[str, Any] = {"token": token, "retry_handlers": _retry_handlers(), "timeout": 10}
        if base_url:
            kwargs["base_url"] = base_url
        self.client = WebClient(**kwargs)
        self.channel = channel
        self.channel_id: str | None = channel if channel[:1] in ("C", "G") and channel[1:].isalnum() else None

    def post(self, text: str, blocks: list[dict[str, Any]], ids: list[int]) -> tuple[str, str]:
        try:
            resp = self.client.chat_postMessage(
                channel=self.channel_id or self.channel, text=text, blocks=blocks, unfurl_links=False,
                metadata={"event_type": METADATA_EVENT, "event_payload": {"notification_ids": ids}})
        except SlackApiError as exc:
            raise ServiceError(f"chat.postMessage: {exc.response.get('error') or exc.response.status_code}") from exc
        except OSError as exc:
            raise ServiceError(f"chat.postMessage: {exc}") from exc
        self.channel_id = str(resp["channel"])
        return str(resp["channel"]), str(resp["ts"])

    def find_posted(self, since: float) -> dict[int, tuple[str, str]]:
        if self.channel_id is None:
            self.channel_id = self._lookup_channel()
        found: dict[int, tuple[str, str]] = {}
        cursor = None
        while True:
            resp = self.client.conversations_history(channel=self.channel_id, oldest=f"{since:.6f}",
                                                     include_all_metadata=True, limit=200, cursor=cursor)
            message: dict[str, Any]
            for message in resp.get("messages", []):
                meta: dict[str, Any] = message.get("metadata") or {}
                if meta.get("event_type") == METADATA_EVENT:
                    for nid in meta.get("event_payload", {}).get("notification_ids", []):
                        found[int(nid)] = (self.channel_id, str(message["ts"]))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return found

    def _lookup_channel(self) -> str:
        name = self.channel.lstrip("#")
        cursor = None
        while True:
            resp = self.client.conversations_list(limit=200, cursor=cursor, types="public_channel,private_channel")
            ch: dict[str, Any]
            for ch in resp.get("channels", []):
                if ch.get("name") == name:
                    return str(ch["id"])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                raise ServiceError(f"channel {self.channel} not found (set slack.channel to its id, e.g. C0123ABC)")


class WebhookTransport:
    can_reconcile = False

    def __init__(self, url: str) -> None:
        self.client = WebhookClient(url, retry_handlers=_retry_handlers(), timeout=10)

    def post(self, text: str, blocks: list[dict[str, Any]], ids: list[int]) -> tuple[str, str]:
        try:
            resp = self.client.send(text=text, blocks=blocks)
        except OSError as exc:
            raise ServiceError(f"webhook: {exc}") from exc
        if resp.status_code != 200:
            raise ServiceError(f"webhook: HTTP {resp.status_code} {resp.body[:100]}")
        return "webhook", ""

    def find_posted(self, since: float) -> dict[int, tuple[str, str]]:
        return {}


class ConsoleTransport:
    """No Slack configured: print, and leave the alerts queryable in the database."""

    can_reconcile = True  # nothing is ever in doubt: printing cannot half-fail

    def post(self, text: str, blocks: list[dict[str, Any]], ids: list[int]) -> tuple[str, str]:
        print(f"[alert] {text}", flush=True)
        return "console", ""

    def find_posted(self, since: float) -> dict[int, tuple[str, str]]:
        return {}


# ------------------------------------------------------------------------------------ messages


def render(notice: Notice, settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    """Text and Block Kit blocks for one notification, in the configured language."""
    t = settings.messages[settings.slack.language]
    energy = settings.energy[notice.energy_type]
    label = energy.label_ko if settings.slack.language == "ko" else energy.label_en
    fields = {
        "building": notice.building, "unit": notice.door, "energy": label, "uom": notice.unit,
        "observed": _num(notice.observed), "reference": _num(notice.reference), "rule": notice.rule,
        "period": notice.period.strftime("%Y-%m") if notice.rule != "night_flow" else notice.period.isoformat(),
        "severity": t.get(f"severity_{notice.severity}", notice.severity), "count": 1,
    }
    text = (t["resolved"] if notice.kind == "resolved" else t[notice.rule]).format(**fields)
    icon = ":white_check_mark:" if notice.kind == "resolved" else (
        ":rotating_light:" if notice.severity == "critical" else ":warning:")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{text}*"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn",
             "text": f"*{_lbl(settings, '동/호', 'Building/unit')}*\n{notice.building} / {notice.door}"},
            {"type": "mrkdwn", "text": f"*{_lbl(settings, '에너지', 'Energy')}*\n{label} ({notice.unit})"},
            {"type": "mrkdwn", "text": f"*{_lbl(settings, '사용량 / 기준', 'Value / reference')}*\n"
                                       f"{fields['observed']} / {fields['reference']} "
                                       f"{'h' if notice.rule == 'night_flow' else notice.unit}"},
            {"type": "mrkdwn", "text": f"*{_lbl(settings, '기간', 'Period')}*\n{fields['period']}"},
            {"type": "mrkdwn", "text": f"*{_lbl(settings, '등급', 'Severity')}*\n{fields['severity']}"},
            {"type": "mrkdwn", "text": f"*{_lbl(settings, '규칙', 'Rule')}*\n{notice.rule}"},
        ]},
    ]
    return text, blocks


def render_digest(notices: list[Notice], settings: Settings, show: int = 15) -> tuple[str, list[dict[str, Any]]]:
    t = settings.messages[settings.slack.language]
    title = t["digest"].format(count=len(notices))
    lines = [f"• {render(n, settings)[0]}" for n in notices[:show]]
    if len(notices) > show:
        lines.append(f"… +{len(notices) - show}")
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
              {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}]
    return title, blocks


def _num(x: float) -> str:
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:,.3f}"


def _lbl(settings: Settings, ko: str, en: str) -> str:
    return ko if settings.slack.language == "ko" else en


# -------------------------------------------------------------------------------------- loop

_CLAIM = """
UPDATE alert_notifications SET state = 'sending', attempts = attempts + 1
WHERE id IN (SELECT id FROM alert_notifications WHERE state = 'pending' ORDER BY id LIMIT %s
             FOR UPDATE SKIP LOCKED)
RETURNING id
"""

_FETCH = """
SELECT n.id, n.kind, a.id, a.rule, a.severity, a.energy_type, a.period, a.observed, a.reference, a.unit,
       b.building_number, h.floor, h.unit
FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id
JOIN households h ON h.id = a.household_id JOIN buildings b ON b.id = h.building_id
WHERE n.id = ANY(%s) ORDER BY n.id
"""


class Notifier:
    def __init__(self, settings: Settings, transport: Transport, *, batch: int = 200) -> None:
        self.settings = settings
        self.transport = transport
        self.batch = batch
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_post = 0.0
        self.sent = 0
        self.failures = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Notifier:
        sec = settings.secrets
        transport: Transport
        if sec.slack_bot_token:
            transport = BotTransport(sec.slack_bot_token.reveal(), settings.slack.channel, sec.slack_base_url or None)
        elif sec.slack_webhook_url:
            transport = WebhookTransport(sec.slack_webhook_url.reveal())
        else:
            logger.info("no SLACK_BOT_TOKEN or SLACK_WEBHOOK_URL: alerts are printed and kept in the alerts table")
            transport = ConsoleTransport()
        return cls(settings, transport)

    def start_thread(self) -> None:
        self.thread = threading.Thread(target=self.run, name="notifier", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(30)

    def run(self) -> None:
        backoff = self.settings.slack.poll_s
        reconciled = False
        while not self.stop_event.is_set():
            try:
                with psycopg.connect(conninfo(self.settings), autocommit=True) as conn:
                    if not reconciled:
                        self.reconcile(conn)
                        reconciled = True
                    while not self.stop_event.is_set():
                        sent = self.deliver_once(conn)
                        backoff = self.settings.slack.poll_s
                        if not sent:
                            self.stop_event.wait(self.settings.slack.poll_s)
            except (psycopg.Error, ServiceError, SlackApiError) as exc:
                self.failures += 1
                logger.warning("notifier: %s; retrying in %.0fs", str(exc).splitlines()[0][:200], backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 60)

    def reconcile(self, conn: psycopg.Connection) -> None:
        """Settle notifications left in ``sending`` by a crash (see the module docstring)."""
        rows = conn.execute("SELECT id, extract(epoch FROM created_at) FROM alert_notifications "
                            "WHERE state = 'sending'").fetchall()
        if not rows:
            return
        ids = [int(r[0]) for r in rows]
        if not self.transport.can_reconcile:
            conn.execute("UPDATE alert_notifications SET state = 'failed', last_error = %s WHERE id = ANY(%s)",
                         ("in doubt after a crash; a webhook cannot confirm, so not resent (at most once)", ids))
            logger.warning("notifier: %d in-doubt webhook notifications marked failed", len(ids))
            return
        since = min(float(r[1]) for r in rows) - 60
        posted = self.transport.find_posted(since)
        done = [i for i in ids if i in posted]
        for i in done:
            conn.execute("UPDATE alert_notifications SET state = 'sent', channel = %s, slack_ts = %s, "
                         "sent_at = now() WHERE id = %s", (posted[i][0], posted[i][1], i))
        back = [i for i in ids if i not in posted]
        if back:
            conn.execute("UPDATE alert_notifications SET state = 'pending' WHERE id = ANY(%s)", (back,))
        logger.info("notifier reconciled in-doubt=%d already_posted=%d to_resend=%d", len(ids), len(done), len(back))

    def deliver_once(self, conn: psycopg.Connection) -> int:
        """Claim pending notifications, post them (one by one, or as one digest), mark them."""
        with conn.transaction():
            claimed = [r[0] for r in conn.execute(_CLAIM, (self.batch,)).fetchall()]
        if not claimed:
            return 0
        notices = [Notice(*r) for r in conn.execute(_FETCH, (claimed,)).fetchall()]
        if len(notices) > self.settings.slack.digest_after:
            groups = [notices]
        else:
            groups = [[n] for n in notices]
        for i, group in enumerate(groups):
            text, blocks = render_digest(group, self.settings) if len(group) > 1 else render(group[0], self.settings)
            ids = [n.id for n in group]
            self._pace()
            try:
                channel, ts = self.transport.post(text, blocks, ids)
            except ServiceError:
                rest = [n.id for g in groups[i:] for n in g]
                conn.execute("UPDATE alert_notifications SET state = 'pending', last_error = %s WHERE id = ANY(%s)",
                             ("slack unavailable", rest))
                raise
            state = "console" if channel == "console" else "sent"
            conn.execute("UPDATE alert_notifications SET state = %s, channel = %s, slack_ts = %s, sent_at = now(), "
                         "last_error = NULL WHERE id = ANY(%s)", (state, channel, ts or None, ids))
            self.sent += len(ids)
        return len(claimed)

    def _pace(self) -> None:
        if isinstance(self.transport, ConsoleTransport):
            return
        wait = self.last_post + MIN_SECONDS_BETWEEN_POSTS - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.last_post = time.monotonic()
