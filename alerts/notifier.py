"""Delivers queued alerts (the ``alert_notifications`` outbox) to Slack: each alert once, whatever Slack
answers.

Per group of notifications (one alert, or a digest of many):

1. *claim* ``pending → sending`` under this notifier's lease, committed **before** posting
   (``FOR UPDATE SKIP LOCKED``: two notifiers never claim the same row);
2. *renew* the lease just before posting; a row whose lease was lost is not posted;
3. *post* once, the notification ids in Slack message metadata (the client never retries a post);
4. *mark* ``sending → sent`` with Slack's channel and ts — or, if the post certainly did not happen
   (429, 4xx, refused connection), give the rows back to ``pending`` for a later pass.

If Slack's answer is lost (5xx, timeout, connection dropped after sending) the post is *in doubt*: the
rows stay ``sending`` and their lease is cut to ``recheck_s``. Every pass of the loop — not only at
start — *reconciles* ``sending`` rows whose lease expired (this notifier's in-doubt posts, or rows of a
notifier that crashed): a bot reads the channel's history and marks the rows it finds there ``sent``
(no second post) and gives the rest back to ``pending``; while the history cannot be read the rows
stay in doubt (other alerts still go out). An incoming webhook cannot read history, so
in-doubt webhook rows are marked ``failed`` and never re-posted: at most once for in-doubt rows, at
least visible as failed in ``apt-energy alerts`` and Grafana.

Limits: a post must finish within the lease it was renewed under (keep the transport's timeout well
below ``lease_s``), and Slack's history must show an accepted message within ``recheck_s``.

The channel's id (to read its history) comes from any ``chat.postMessage`` answer, else the channel
list, else one status post; if the history still cannot be read, the notifier says so with the fix in
one line in ``notifier_status`` (``apt-energy alerts``, ``pipeline status``, the alerts dashboard), and
goes on delivering everything else.

Lifecycle steps (:mod:`apt_energy.alerts.lifecycle`) go through the same outbox: acknowledging, assigning
and a person's resolution edit the alert's first message in place (``chat.update``; idempotent, so an
in-doubt edit is simply made again); reminders and escalations are new posts. Each pass first takes the
escalation steps that fell due. Quiet hours hold new messages of sleeping severities (never a person's
step).

Slack trouble never blocks the stream: this runs in its own thread (or process) with its own
connection, and backs off (or waits Retry-After) between failed passes. Many pending alerts go out as
one digest (Slack allows about one message per second per channel).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from apt_energy.alerts import lifecycle, outbox, status
from apt_energy.alerts.message import Message, MessageStyle, digests, render, render_case
from apt_energy.alerts.outbox import EDIT_KINDS, Notice
from apt_energy.alerts.quiet import QuietHours
from apt_energy.alerts.slack import HistoryUnreadable, Posted, PostFailed, Transport
from apt_energy.core.backoff import Backoff, BackoffPolicy
from apt_energy.core.errors import ConfigError, ServiceError

logger = logging.getLogger(__name__)

__all__ = ["Notifier", "NotifierOptions", "NotifierStats", "default_owner"]

IN_DOUBT_NO_HISTORY = "in doubt: a webhook cannot confirm delivery, so it is not resent (at most once)"


@dataclass(frozen=True)
class NotifierOptions:
    """Knobs of the delivery loop."""

    poll_s: float = 2.0             # idle wait between passes
    digest_after: int = 5           # more claimed notifications than this → one digest message
    batch: int = 200                # most rows claimed per pass
    lease_s: float = 60.0           # a claim's lifetime; at least 3 × the transport's timeout
    recheck_s: float = 5.0          # after an in-doubt post, wait this long before reading history
    history_margin_s: float = 60.0  # read history from this long before the claim (clock skew)
    min_post_interval_s: float = 1.1  # Slack: about one message per second per channel
    max_backoff_s: float = 60.0
    escalate_after_s: Mapping[str, float] = field(default_factory=dict)   # severity → unacknowledged wait
    quiet: QuietHours | None = None   # severities whose new messages wait, by the complex's clock


def default_owner() -> str:
    """A lease owner id unique to this notifier instance (host, pid, random)."""
    return f"{socket.gethostname()[:50]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class NotifierStats:
    """Counters a running notifier keeps (tests and logs read them)."""

    sent: int = 0          # notifications marked delivered after this notifier posted them
    reconciled: int = 0    # in-doubt notifications found in the channel's history (not posted again)
    failures: int = 0      # failed passes (Slack or PostgreSQL trouble)
    passes: int = 0        # completed passes (reconcile + deliver)


class Notifier:
    """The delivery loop. ``connect`` returns a new PostgreSQL connection (used in autocommit mode)."""

    def __init__(self, connect: Callable[[], psycopg.Connection], transport: Transport, style: MessageStyle, *,
                 options: NotifierOptions | None = None, owner: str | None = None) -> None:
        self._connect = connect
        self.transport = transport
        self.style = style
        self.options = options or NotifierOptions()
        if self.options.lease_s < 3 * transport.timeout_s:
            # A post must end before its lease can run out, or a reconciler could read history too early.
            raise ConfigError(f"notifier lease_s={self.options.lease_s:g} must be at least 3 × the Slack client's "
                              f"timeout ({transport.timeout_s:g} s)")
        self.owner = owner or default_owner()
        self.stop_event = threading.Event()
        self.stats = NotifierStats()
        self._thread: threading.Thread | None = None
        self._last_post = 0.0
        self.problem: HistoryUnreadable | None = None   # what keeps in-doubt posts from being checked
        self._in_doubt = 0

    def start_thread(self) -> None:
        """Run the loop in a daemon thread (``apt-energy spark`` runs it beside the stream job)."""
        self._thread = threading.Thread(target=self.run, name="notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread:
            self._thread.join(30)

    def run(self) -> None:
        """Deliver until :attr:`stop_event` is set; reconnect after PostgreSQL errors."""
        opts = self.options
        # Slack or PostgreSQL trouble: poll_s doubling to max_backoff_s, reset by a good pass.
        backoff = Backoff(policy=BackoffPolicy(base_s=opts.poll_s, cap_s=max(opts.poll_s, opts.max_backoff_s)))
        logger.info("notifier started owner=%s transport=%s", self.owner, type(self.transport).__name__)
        while not self.stop_event.is_set():
            try:
                with self._connect() as conn:
                    conn.autocommit = True
                    while not self.stop_event.is_set():
                        self.escalate(conn)
                        try:
                            self.reconcile(conn)
                        except ServiceError as exc:
                            # The in-doubt rows stay held for recheck_s; other alerts need not wait for them.
                            self.stats.failures += 1
                            logger.warning("notifier: in-doubt posts not checked yet: %s", _first_line(exc))
                        self.report(conn)
                        try:
                            delivered = self.deliver_once(conn)
                        except ServiceError as exc:   # Slack: the rows are settled, wait and go on
                            self.stats.failures += 1
                            retry_after = exc.retry_after_s if isinstance(exc, PostFailed) else None
                            step = backoff.next_delay()
                            delay = retry_after if retry_after is not None else step
                            logger.warning("notifier: %s; next pass in %.1fs", _first_line(exc), delay)
                            self.stop_event.wait(delay)
                            continue
                        backoff.reset()
                        self.stats.passes += 1
                        if not delivered:
                            self.stop_event.wait(opts.poll_s)
            except (psycopg.Error, ServiceError) as exc:   # ServiceError here: the connection factory's
                self.stats.failures += 1
                delay = backoff.next_delay()
                logger.warning("notifier: PostgreSQL: %s; reconnecting in %.0fs", _first_line(exc), delay)
                self.stop_event.wait(delay)
        self._forget()

    def escalate(self, conn: psycopg.Connection) -> int:
        """Take the escalation steps that fell due (reminders, then escalations); returns how many."""
        if not self.options.escalate_after_s:
            return 0
        return lifecycle.escalate_due(conn, self.options.escalate_after_s)

    def report(self, conn: psycopg.Connection) -> None:
        """Heartbeat and health into ``notifier_status`` (what ``apt-energy alerts`` shows)."""
        if self.problem is not None and outbox.in_doubt(conn) == 0:
            self.problem = None   # settled meanwhile (by this notifier or another): nothing left to check
        problem = self.problem
        status.record(conn, owner=self.owner, transport=self.transport.kind,
                      destination=self.transport.destination, in_doubt=self._in_doubt if problem else 0,
                      problem=f"in-doubt posts cannot be checked: {_first_line(problem)}" if problem else None,
                      fix=problem.fix if problem else None)

    def _forget(self) -> None:
        try:
            with self._connect() as conn:
                status.forget(conn, self.owner)
                conn.commit()
        except (psycopg.Error, ServiceError) as exc:
            logger.warning("notifier: status row not removed: %s", _first_line(exc))

    def reconcile(self, conn: psycopg.Connection) -> int:
        """Settle ``sending`` rows whose lease expired, against the channel's history; returns how many."""
        rows = outbox.take_expired(conn, owner=self.owner, lease_s=self.options.lease_s)
        if not rows:
            return 0
        ids = [r.id for r in rows]
        if not self.transport.can_read_history:
            outbox.mark_failed(conn, ids, owner=self.owner, error=IN_DOUBT_NO_HISTORY)
            logger.warning("notifier: in-doubt webhook notifications marked failed count=%d", len(ids))
            return len(ids)
        since = min(r.claimed_at for r in rows).timestamp() - self.options.history_margin_s
        try:
            posted = self.transport.find_posted(since)
        except ServiceError as exc:
            # Still in doubt: keep them ours for a short while, then any notifier may try again.
            outbox.hold_in_doubt(conn, ids, owner=self.owner, recheck_s=self.options.recheck_s,
                                 error=f"history unavailable: {_first_line(exc)}")
            if isinstance(exc, HistoryUnreadable):
                self.problem, self._in_doubt = exc, len(ids)
            raise
        self.problem = None
        found: dict[Posted, list[int]] = {}
        for i in ids:
            if i in posted:
                found.setdefault(posted[i], []).append(i)
        for where, group in found.items():
            self.stats.reconciled += outbox.mark_delivered(conn, group, owner=self.owner,
                                                           state=self.transport.delivered_state,
                                                           channel=where.channel, ts=where.ts)
        back = [i for i in ids if i not in posted]
        if back:
            outbox.give_back(conn, back, owner=self.owner, error=None)
        logger.info("notifier reconciled in_doubt=%d already_posted=%d to_resend=%d",
                    len(ids), len(ids) - len(back), len(back))
        return len(ids)

    def deliver_once(self, conn: psycopg.Connection) -> int:
        """Claim pending notifications, post them (one by one, or as digests within Slack's limits) or edit
        the alerts' messages, mark them; returns how many were claimed. Raises :class:`PostFailed` after
        settling the rows if a post failed."""
        quiet = self.options.quiet.asleep(datetime.now(UTC)) if self.options.quiet else ()
        notices = outbox.claim(conn, owner=self.owner, limit=self.options.batch, lease_s=self.options.lease_s,
                               quiet=quiet)
        if not notices:
            return 0
        edits = [n for n in notices if self._edits(n)]
        posts = [n for n in notices if not self._edits(n)]
        groups: list[tuple[list[Notice], Callable[[], None]]] = [
            ([n], functools.partial(self._edit, conn, n)) for n in edits]
        if len(posts) > self.options.digest_after:
            groups += [(g, functools.partial(self._post, conn, g, m)) for g, m in digests(posts, self.style)]
        else:
            groups += [([n], functools.partial(self._post, conn, [n], render(n, self.style))) for n in posts]
        for i, (_, send) in enumerate(groups):
            try:
                send()
            except PostFailed:
                rest = [n.id for g, _ in groups[i + 1:] for n in g]
                if rest:
                    outbox.give_back(conn, rest, owner=self.owner, error=None)
                raise
        return len(notices)

    def _edits(self, notice: Notice) -> bool:
        """A person's step on an alert whose own message is in the channel edits that message in place."""
        return (self.transport.can_edit and notice.kind in EDIT_KINDS and notice.target_ts is not None
                and not notice.target_shared and (notice.kind != "resolved" or notice.resolved_by is not None))

    def _edit(self, conn: psycopg.Connection, notice: Notice) -> None:
        ids = [notice.id]
        self._pace()
        if not outbox.renew(conn, ids, owner=self.owner, lease_s=self.options.lease_s):
            logger.warning("notifier: lease lost before editing ids=%s; left to whoever settles them", ids)
            return
        target = Posted(notice.target_channel or "", notice.target_ts)
        try:
            where = self.transport.update(target, render_case(notice, self.style))
        except PostFailed as exc:
            # An edit replaces the message with the current state: making it again is harmless.
            outbox.give_back(conn, ids, owner=self.owner, error=str(exc)[:500])
            raise
        self.stats.sent += outbox.mark_delivered(conn, ids, owner=self.owner, state=self.transport.delivered_state,
                                                 channel=where.channel, ts=where.ts)

    def _post(self, conn: psycopg.Connection, group: list[Notice], message: Message) -> None:
        ids = [n.id for n in group]
        self._pace()
        if not outbox.renew(conn, ids, owner=self.owner, lease_s=self.options.lease_s):
            logger.warning("notifier: lease lost before posting ids=%s; left to whoever settles them", ids)
            return
        try:
            where = self.transport.post(message, ids)
        except PostFailed as exc:
            if not exc.in_doubt:
                outbox.give_back(conn, ids, owner=self.owner, error=str(exc)[:500])
            elif self.transport.can_read_history:
                outbox.hold_in_doubt(conn, ids, owner=self.owner, recheck_s=self.options.recheck_s,
                                     error=str(exc)[:500])
            else:
                outbox.mark_failed(conn, ids, owner=self.owner, error=f"{IN_DOUBT_NO_HISTORY}: {exc}"[:500])
            raise
        marked = outbox.mark_delivered(conn, ids, owner=self.owner, state=self.transport.delivered_state,
                                       channel=where.channel, ts=where.ts)
        if marked < len(ids):
            logger.warning("notifier: posted but the lease was lost ids=%s; the history check settles them", ids)
        self.stats.sent += marked

    def _pace(self) -> None:
        if not self.transport.paced:
            return
        wait = self._last_post + self.options.min_post_interval_s - time.monotonic()
        if wait > 0:
            self.stop_event.wait(wait)
        self._last_post = time.monotonic()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]

