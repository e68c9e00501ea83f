"""``apt-energy alerts`` (recent alerts, their case and Slack delivery; ``ack|assign|resolve ID``) and
``apt-energy notifier``; also composes the notifier from the settings for ``apt-energy spark``, which runs
one in-process."""

from __future__ import annotations

import argparse
import functools
import getpass
import logging
from datetime import date, datetime
from typing import NamedTuple

import psycopg
from apt_energy.alerts import lifecycle, outbox, status
from apt_energy.alerts.buttons import ButtonListener, Origin
from apt_energy.alerts.message import MessageStyle
from apt_energy.alerts.metrics import notifier_samples
from apt_energy.alerts.notifier import Notifier, NotifierOptions
from apt_energy.alerts.quiet import QuietHours
from apt_energy.alerts.slack import ConsoleTransport, destination, transport_for
from apt_energy.config import Settings
from apt_energy.core.cliutil import on_stop_signals, print_json
from apt_energy.core.errors import ConfigError, ServiceError
from apt_energy.core.metrics import serve_if_enabled
from apt_energy.core.table import table
from apt_energy.database import connect
from apt_energy.rules import registry as rule_registry
from psycopg.rows import class_row

from apt_energy import config

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="list recent alerts, their case and Slack delivery; ack|assign|resolve ID",
                       description="Without an action: the alerts table with each alert's case (acknowledged, "
                                   "assignee, escalation), its Slack delivery and what the running notifier "
                                   "reports. ack|assign|resolve ID: take that step (an audit row, and the alert's "
                                   "Slack message is edited by the notifier).")
    p.add_argument("action", nargs="?", choices=["list", "ack", "assign", "resolve"], default="list")
    p.add_argument("id", nargs="?", type=int, help="the alert's id (first column of the list)")
    p.add_argument("--note", help="a note kept with the step (ack, assign, resolve)")
    p.add_argument("--as", dest="actor", default=None, help="who takes the step (default: your login name)")
    p.add_argument("--to", dest="assignee", default=None, help="assign: to whom (default: yourself)")
    p.add_argument("--open", action="store_true", help="only alerts not resolved yet")
    p.add_argument("--limit", type=int, default=20, help="how many alerts (default 20)")
    names = [name for rule in rule_registry.current() for name in rule.names]
    p.add_argument("--rule", help=f"only this rule: {', '.join(names)}")
    p.add_argument("--json", action="store_true",
                   help="print {alerts: [...], totals: {rule: n}, cases: {...}, notifiers: [...]} as JSON "
                        "instead of the table")
    p.set_defaults(func=alerts_command)
    n = sub.add_parser("notifier", help="deliver queued alerts to Slack (also runs inside `apt-energy spark`)",
                       description="Slack bot token (SLACK_BOT_TOKEN + slack.channel) or incoming webhook "
                                   "(SLACK_WEBHOOK_URL); without either, alerts are printed. With "
                                   "SLACK_APP_TOKEN (+ alerts.app_id, team_id, operators) it also takes the "
                                   "messages' button presses over Socket Mode. "
                                   "SLACK_API_BASE_URL points the client at another Slack-compatible API. "
                                   "Any number of notifiers may run on one database: each alert is posted once.")
    n.set_defaults(func=run_notifier)


def build_notifier(settings: Settings, *, options: NotifierOptions | None = None,
                   owner: str | None = None) -> Notifier:
    """A notifier wired from the settings: the configured transport, language and loop knobs."""
    transport = transport_for(settings)
    if isinstance(transport, ConsoleTransport):
        logger.info("no SLACK_BOT_TOKEN or SLACK_WEBHOOK_URL: alerts are printed and kept in the alerts table")
    opts = options or NotifierOptions(poll_s=settings.slack.poll_s, digest_after=settings.slack.digest_after,
                                      escalate_after_s=escalate_after_s(settings), quiet=quiet_hours(settings))
    return Notifier(functools.partial(connect, settings, autocommit=True), transport,
                    MessageStyle.from_settings(settings), options=opts, owner=owner)


def escalate_after_s(settings: Settings) -> dict[str, float]:
    """``alerts.escalate_after_min`` in seconds, per severity."""
    return {sev: m * 60 for sev, m in settings.alerts.escalate_after_min.items()}


def quiet_hours(settings: Settings) -> QuietHours:
    """``alerts.quiet_hours`` read in the complex's time zone."""
    return QuietHours.parse(settings.complex.timezone, settings.alerts.quiet_hours)


class AlertLine(NamedTuple):
    id: int
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
    acknowledged_by: str | None
    ack_min: float | None
    assignee: str | None
    escalation: int
    delivery: str | None


class RuleCount(NamedTuple):
    rule: str
    n: int


class CaseTotals(NamedTuple):
    raised: int
    acknowledged: int
    escalated: int
    resolved: int
    open: int
    median_ack_min: float | None


def alerts_command(args: argparse.Namespace) -> int:
    if args.action == "list":
        return list_alerts(args)
    if args.id is None:
        raise SystemExit(f"apt-energy alerts {args.action}: give the alert's id (apt-energy alerts --open)")
    step: lifecycle.Step = {"ack": "acknowledged", "assign": "assigned", "resolve": "resolved"}[args.action]  # type: ignore[assignment]
    actor = args.actor or getpass.getuser()
    with connect(config.load()) as conn:
        outcome = lifecycle.apply(conn, args.id, step, actor=actor, note=args.note, assignee=args.assignee)
    print(outcome.reason if outcome.done else f"not changed: {outcome.reason}")
    return 0 if outcome.done else 1


def list_alerts(args: argparse.Namespace) -> int:
    settings = config.load()
    with connect(settings) as conn:
        with conn.cursor(row_factory=class_row(AlertLine)) as cur:
            rows = cur.execute(
                """SELECT a.id, a.raised_at, b.building_number AS building, h.floor * 100 + h.unit AS door,
                          a.energy_type, a.period, a.rule, a.severity, a.observed, a.reference, a.unit, a.state,
                          a.acknowledged_by,
                          extract(epoch FROM a.acknowledged_at - a.raised_at)::float8 / 60 AS ack_min,
                          a.assignee, a.escalation,
                          string_agg(n.kind || ':' || n.state, ' ' ORDER BY n.id) AS delivery
                   FROM alerts a JOIN households h ON h.id = a.household_id
                   JOIN buildings b ON b.id = h.building_id
                   LEFT JOIN alert_notifications n ON n.alert_id = a.id
                   WHERE (%(rule)s::text IS NULL OR a.rule = %(rule)s) AND (NOT %(open)s OR a.state = 'active')
                   GROUP BY a.id, b.building_number, h.floor, h.unit ORDER BY a.raised_at DESC, a.id DESC
                   LIMIT %(limit)s""", {"rule": args.rule, "limit": args.limit, "open": args.open}).fetchall()
        with conn.cursor(row_factory=class_row(RuleCount)) as cur:
            counts = cur.execute("SELECT rule, count(*) AS n FROM alerts GROUP BY rule ORDER BY rule").fetchall()
        with conn.cursor(row_factory=class_row(CaseTotals)) as cur:
            totals = cur.execute(CASE_TOTALS).fetchone()
        health = status.running(conn)
    if args.json:
        print_json({"alerts": rows, "totals": {c.rule: c.n for c in counts}, "cases": totals,
                    "notifiers": health, "delivery": status.describe(health, would=destination(settings))})
        return 0

    print("\n".join(table(
        [(r.id, f"{r.raised_at:%Y-%m-%d %H:%M}", r.building, r.door, r.energy_type, r.period, r.rule, r.severity,
          f"{r.observed:.2f}", f"{r.reference:.2f}", r.unit, r.state, _acknowledged(r), r.assignee or "-", r.escalation,
          r.delivery or "-") for r in rows],
        headers=("id", "raised (UTC)", "bldg", "unit", "energy", "period", "rule", "severity", "observed", "reference",
                 "uom", "state", "acknowledged", "assignee", "esc", "delivery"),
        align=">"+"<>><<<<>><<<<><", sep=" ")))
    print("totals: " + (", ".join(f"{c.rule} {c.n}" for c in counts) or "no alerts"))
    if totals and totals.raised:
        median = f"{totals.median_ack_min:.1f} min" if totals.median_ack_min is not None else "-"
        print(f"cases: raised {totals.raised}, acknowledged {totals.acknowledged}, escalated {totals.escalated}, "
              f"resolved {totals.resolved}, open {totals.open}; median time to acknowledge {median}")
    for line in status.describe(health, would=destination(settings)):
        print(line)
    return 0


def _acknowledged(r: AlertLine) -> str:
    """Who acknowledged and how long after raising, or ``-``."""
    return f"{r.acknowledged_by} +{_minutes(r.ack_min)}" if r.acknowledged_by and r.ack_min is not None else "-"


def _minutes(m: float) -> str:
    """Time to acknowledge, short: 42s, 7m, 3h05m."""
    if m < 1:
        return f"{m * 60:.0f}s"
    return f"{m:.0f}m" if m < 60 else f"{int(m // 60)}h{int(m % 60):02d}m"


CASE_TOTALS = """
SELECT count(*)::int AS raised, count(acknowledged_at)::int AS acknowledged,
       count(*) FILTER (WHERE escalation > 0)::int AS escalated,
       count(*) FILTER (WHERE state = 'resolved')::int AS resolved,
       count(*) FILTER (WHERE state = 'active')::int AS open,
       (percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM acknowledged_at - raised_at)) / 60)::float8
           AS median_ack_min
FROM alerts"""


def build_buttons(settings: Settings) -> ButtonListener | None:
    """The Socket Mode listener for Slack's buttons, if ``SLACK_APP_TOKEN`` is set (else None)."""
    token = settings.secrets.slack_app_token
    if not token:
        return None
    a = settings.alerts
    if not (a.app_id and a.team_id and a.operators):
        raise ConfigError("SLACK_APP_TOKEN is set: also set alerts.app_id (A…), alerts.team_id (T…) and "
                          "alerts.operators (Slack user ids) so button presses can be checked")
    return ButtonListener(functools.partial(connect, settings, autocommit=True), app_token=token.reveal(),
                          origin=Origin(a.app_id, a.team_id), operators=a.operators,
                          base_url=settings.secrets.slack_base_url or None)


def run_notifier(args: argparse.Namespace) -> int:
    settings = config.load()
    notifier = build_notifier(settings)
    buttons = build_buttons(settings)
    on_stop_signals(notifier.stop_event.set)
    m = settings.metrics
    server = serve_if_enabled(m, m.notifier_port, lambda: notifier_samples(notifier.stats, outbox_counts(settings)))
    if buttons:
        buttons.start()
    try:
        notifier.run()
    finally:
        if buttons:
            buttons.stop()
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
