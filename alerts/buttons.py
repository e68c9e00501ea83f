"""Slack's buttons on alert messages (Acknowledge, Assign to me, Resolve) over Socket Mode: no public URL,
only an outbound WebSocket authenticated by the app-level token (``SLACK_APP_TOKEN``, through
``apps.connections.open``) — what a complex's office network allows.

Every envelope is acknowledged by its ``envelope_id`` at once (Slack resends unacknowledged ones), then
judged (:func:`judge`, pure): it must be an ``interactive`` envelope with a ``block_actions`` payload from
*our* app (``api_app_id``) in *our* workspace (``team.id``), pressed by a configured operator, on one of
our buttons; anything else is refused and changes nothing. A replayed envelope (the same id again) is
ignored; two people pressing at once are serialised by the alert's row lock in
:func:`apt_energy.alerts.lifecycle.apply`, so a step happens once. The database step queues the edit of
the alert's message (``chat.update``), which the notifier makes — one edit per step.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from apt_energy.alerts import lifecycle
from apt_energy.alerts.message import ACTIONS
from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

logger = logging.getLogger(__name__)

__all__ = ["ButtonListener", "ButtonStats", "Origin", "Press", "judge"]


@dataclass(frozen=True)
class Origin:
    """Whose interactions count: our Slack app and our workspace."""

    app_id: str
    team_id: str


@dataclass(frozen=True)
class Press:
    """A button press that passed every check."""

    envelope_id: str
    user: str
    step: lifecycle.Step
    alert_id: int


def judge(envelope: Mapping[str, Any], *, origin: Origin, operators: Collection[str]) -> Press | str:
    """The press an envelope carries, or why it is refused (pure)."""
    if envelope.get("type") != "interactive":
        return f"not an interaction (type {envelope.get('type')!r})"
    payload = envelope.get("payload")
    if not isinstance(payload, Mapping) or payload.get("type") != "block_actions":
        return "not a button press (payload type is not block_actions)"
    if not origin.app_id or payload.get("api_app_id") != origin.app_id:
        return f"from another app (api_app_id {payload.get('api_app_id')!r})"
    team = payload.get("team") or {}
    user = payload.get("user") or {}
    if not origin.team_id or team.get("id") != origin.team_id or user.get("team_id", origin.team_id) != origin.team_id:
        return f"from another workspace (team {team.get('id')!r})"
    uid = str(user.get("id") or "")
    if uid not in operators:
        return f"user {uid or '?'} is not one of alerts.operators"
    actions = payload.get("actions") or []
    if len(actions) != 1 or not isinstance(actions[0], Mapping) or actions[0].get("action_id") not in ACTIONS:
        return "not one of our buttons"
    try:
        alert_id = int(str(actions[0].get("value")))
    except (TypeError, ValueError):
        return "a button without an alert id"
    step: lifecycle.Step = ACTIONS[actions[0]["action_id"]]  # type: ignore[assignment]
    return Press(str(envelope.get("envelope_id")), uid, step, alert_id)


@dataclass
class ButtonStats:
    """What the listener did (tests and logs read it)."""

    done: int = 0                                    # steps taken
    unchanged: int = 0                               # valid presses that changed nothing (already done)
    replayed: int = 0                                # envelopes seen before
    refused: list[str] = field(default_factory=list)  # why, per refused envelope


class ButtonListener:
    """Receives button presses over Socket Mode and takes their lifecycle steps in the database."""

    def __init__(self, connect: Callable[[], psycopg.Connection], *, app_token: str, origin: Origin,
                 operators: Collection[str], base_url: str | None = None, remember: int = 10_000) -> None:
        self._connect = connect
        self.origin = origin
        self.operators = frozenset(operators)
        self.stats = ButtonStats()
        self._seen: OrderedDict[str, None] = OrderedDict()   # recent envelope ids (replays are ignored)
        self._remember = remember
        self._lock = threading.Lock()
        web = WebClient(base_url=base_url) if base_url else WebClient()
        self.client = SocketModeClient(app_token=app_token, web_client=web, auto_reconnect_enabled=True)
        self.client.socket_mode_request_listeners.append(self._on_request)

    def start(self) -> None:
        """Open the Socket Mode connection (its threads run in the background)."""
        self.client.connect()
        logger.info("buttons: Socket Mode connected app=%s operators=%d", self.origin.app_id, len(self.operators))

    def stop(self) -> None:
        self.client.close()

    def _on_request(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        # Acknowledge first: Slack wants it within 3 s and resends an unacknowledged envelope.
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        self.handle({"type": req.type, "envelope_id": req.envelope_id, "payload": req.payload})

    def handle(self, envelope: Mapping[str, Any]) -> lifecycle.Outcome | None:
        """Judge one (acknowledged) envelope and take its step; None if refused or replayed."""
        envelope_id = str(envelope.get("envelope_id") or "")
        with self._lock:
            if envelope_id in self._seen:
                self.stats.replayed += 1
                logger.info("buttons: replayed envelope=%s ignored", envelope_id)
                return None
            self._seen[envelope_id] = None
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        press = judge(envelope, origin=self.origin, operators=self.operators)
        if isinstance(press, str):
            with self._lock:
                self.stats.refused.append(press)
            logger.warning("buttons: refused envelope=%s: %s", envelope_id, press)
            return None
        with self._connect() as conn:
            outcome = lifecycle.apply(conn, press.alert_id, press.step, actor=press.user)
        with self._lock:
            if outcome.done:
                self.stats.done += 1
            else:
                self.stats.unchanged += 1
        logger.info("buttons: alert=%d step=%s user=%s: %s", press.alert_id, press.step, press.user, outcome.reason)
        return outcome
