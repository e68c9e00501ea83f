"""``apt-energy alerts`` (recent alerts and their Slack delivery) and ``apt-energy notifier``."""

from __future__ import annotations

import argparse

from apt_energy.database import connect

from apt_energy import config
from apt_energy.cliutil import on_stop_signals


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="list recent alerts and their Slack delivery state",
                       description="Reads the alerts and alert_notifications tables.")
    p.add_argument("--limit", type=int, default=20, help="how many alerts (default 20)")
    p.add_argument("--rule", help="only this rule: threshold, threshold_critical, night_flow, peer")
    p.set_defaults(func=list_alerts)
    n = sub.add_parser("notifier", help="deliver queued alerts to Slack (also runs inside `apt-energy spark`)",
                       description="Slack bot token (SLACK_BOT_TOKEN + slack.channel) or incoming webhook "
                                   "(SLACK_WEBHOOK_URL); without either, alerts are printed. "
                                   "SLACK_API_BASE_URL points the client at another Slack-compatible API.")
    n.set_defaults(func=run_notifier)


def list_alerts(args: argparse.Namespace) -> int:
    settings = config.load()
    with connect(settings) as conn:
        rows = conn.execute(
            """SELECT a.raised_at, b.building_number, h.floor * 100 + h.unit, a.energy_type, a.period, a.rule,
                      a.severity, a.observed, a.reference, a.unit, a.state,
                      string_agg(n.kind || ':' || n.state, ' ' ORDER BY n.kind DESC)
               FROM alerts a JOIN households h ON h.id = a.household_id JOIN buildings b ON b.id = h.building_id
               LEFT JOIN alert_notifications n ON n.alert_id = a.id
               WHERE %(rule)s::text IS NULL OR a.rule = %(rule)s
               GROUP BY a.id, b.building_number, h.floor, h.unit ORDER BY a.raised_at DESC, a.id DESC
               LIMIT %(limit)s""", {"rule": args.rule, "limit": args.limit}).fetchall()
        counts = conn.execute("SELECT rule, count(*) FROM alerts GROUP BY rule ORDER BY rule").fetchall()
    print(f"{'raised (UTC)':<17} {'bldg':>4} {'unit':>5} {'energy':<11} {'period':<10} {'rule':<18} "
          f"{'severity':<8} {'observed':>10} {'reference':>10} {'uom':<4} {'state':<8} delivery")
    for r in rows:
        print(f"{r[0]:%Y-%m-%d %H:%M} {r[1]:>4} {r[2]:>5} {r[3]:<11} {r[4]!s:<10} {r[5]:<18} {r[6]:<8} "
              f"{r[7]:>10.2f} {r[8]:>10.2f} {r[9]:<4} {r[10]:<8} {r[11] or '-'}")
    print("totals: " + (", ".join(f"{rule} {n}" for rule, n in counts) or "no alerts"))
    return 0


def run_notifier(args: argparse.Namespace) -> int:
    from apt_energy.spark.notifier import Notifier

    notifier = Notifier.from_settings(config.load())
    on_stop_signals(notifier.stop_event.set)
    notifier.run()
    return 0
