"""``apt-energy alerts`` (recent alerts and their Slack delivery) and ``apt-energy notifier``; also
composes the notifier from the settings for ``apt-energy spark``, which runs one in-process."""

from __future__ import annotations

import argparse
import functools
import logging
from datetime import date, datetime
from typing import NamedTuple

import psycopg
from apt_energy.alerts import outbox
from apt_energy.alerts.message import MessageStyle
from apt_energy.alerts.metrics import notifier_samples
from apt_energy.alerts.notifier import Notifier, NotifierOptions
from apt_energy.alerts.slack import ConsoleTransport, destination, transport_for
from apt_energy.config import Settings
from apt_energy.database import connect
from psycopg.rows import class_row

from apt_energy import config
from apt_energy.cliutil import on_stop_signals, print_json
from apt_energy.errors import ServiceError
from apt_energy.metrics import serve_if_enabled

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="list recent alerts and their Slack delivery state",
                       description="Reads the alerts and alert_notifications tables.")
    p.add_argument("--limit", type=int, default=20, help="how many alerts (default 20)")
    p.add_argument("--rule", help="only this rule: threshold, threshold_critical, night_flow, peer")
    p.add_argument("--json", action="store_true",
                   help="print {alerts: [...], totals: {rule: n}, delivery} as JSON instead of the table")
    p.set_defaults(func=list_alerts)
    n = sub.add_parser("notifier", help="deliver queued alerts to Slack (also runs inside `apt-energy spark`)",
                       description="Slack bot token (SLACK_BOT_TOKEN + slack.channel) or incoming webhook "
                                   "(SLACK_WEBHOOK_URL); without either, alerts are printed. "
                                   "SLACK_API_BASE_URL points the client at another Slack-compatible API. "
                                   "Any number of notifiers may run on one database: each alert is posted once.")
    n.set_defaults(func=run_notifier)


def build_notifier(settings: Settings, *, options: NotifierOptions | None = None,
                   owner: str | None = None) -> Notifier:
    """A notifier wired from the settings: the configured transport, language and loop knobs."""
    transport = transport_for(settings)
    if isinstance(transport, ConsoleTransport):
        logger.info("no SLACK_BOT_TOKEN or SLACK_WEBHOOK_URL: alerts are printed and kept in the alerts table")
    opts = options or NotifierOptions(poll_s=settings.slack.poll_s, digest_after=settings.slack.digest_after)
    return Notifier(functools.partial(connect, settings, autocommit=True), transport,
                    MessageStyle.from_settings(settings), options=opts, owner=owner)


class AlertLine(NamedTuple):
    raised_at: datetime
    building: int
    door: int
    energy_type: str
    period: date
    rule: str
    severity: str
    observed: float
    reference: float
    unit: str
    state: str
    delivery: str | None


class RuleCount(NamedTuple):
    rule: str
    n: int


def list_alerts(args: argparse.Namespace) -> int:
    settings = config.load()
    with connect(settings) as conn:
        with conn.cursor(row_factory=class_row(AlertLine)) as cur:
            rows = cur.execute(
                """SELECT a.raised_at, b.building_number AS building, h.floor * 100 + h.unit AS door, a.energy_type,
                          a.period, a.rule, a.severity, a.observed, a.reference, a.unit, a.state,
                          string_agg(n.kind || ':' || n.state, ' ' ORDER BY n.kind DESC) AS delivery
                   FROM alerts a JOIN households h ON h.id = a.household_id
                   JOIN buildings b ON b.id = h.building_id
                   LEFT JOIN alert_notifications n ON n.alert_id = a.id
                   WHERE %(rule)s::text IS NULL OR a.rule = %(rule)s
                   GROUP BY a.id, b.building_number, h.floor, h.unit ORDER BY a.raised_at DESC, a.id DESC
                   LIMIT %(limit)s""", {"rule": args.rule, "limit": args.limit}).fetchall()
        with conn.cursor(row_factory=class_row(RuleCount)) as cur:
            counts = cur.execute("SELECT rule, count(*) AS n FROM alerts GROUP BY rule ORDER BY rule").fetchall()
    if args.json:
        print_json({"alerts": rows, "totals": {c.rule: c.n for c in counts}, "delivery": destination(settings)})
        return 0
    print(f"{'raised (UTC)':<17} {'bldg':>4} {'unit':>5} {'energy':<11} {'period':<10} {'rule':<18} "
          f"{'severity':<8} {'observed':>10} {'reference':>10} {'uom':<4} {'state':<8} delivery")
    for r in rows:
        print(f"{r.raised_at:%Y-%m-%d %H:%M} {r.building:>4} {r.door:>5} {r.energy_type:<11} {r.period!s:<10} "
              f"{r.rule:<18} {r.severity:<8} {r.observed:>10.2f} {r.reference:>10.2f} {r.unit:<4} {r.state:<8} "
              f"{r.delivery or '-'}")
    print("totals: " + (", ".join(f"{c.rule} {c.n}" for c in counts) or "no alerts"))
    print(f"delivery: {destination(settings)}")
    return 0


def run_notifier(args: argparse.Namespace) -> int:
    settings = config.load()
    notifier = build_notifier(settings)
    on_stop_signals(notifier.stop_event.set)
    m = settings.metrics
    server = serve_if_enabled(m, m.notifier_port, lambda: notifier_samples(notifier.stats, outbox_counts(settings)))
    try:
        notifier.run()
    finally:
        if server is not None:
            server.close()
    return 0


def outbox_counts(settings: Settings) -> dict[str, int] | None:
    """The outbox's rows per state for the metrics; None (no samples) while PostgreSQL is unreachable."""
    try:
        with connect(settings, autocommit=True) as conn:
            return outbox.state_counts(conn)
    except (psycopg.Error, ServiceError) as exc:
        logger.debug("metrics: outbox not read error=%s", exc)
        return None
