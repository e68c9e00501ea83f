"""``apt-energy spark``: run the streaming job (and the Slack notifier beside it)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from apt_energy.config import Settings
from apt_energy.core.cliutil import add_env_flag, on_stop_signals
from apt_energy.core.errors import ConfigError
from apt_energy.core.metrics import Sample, serve_if_enabled
from apt_energy.rules import ProjectionOptions

from apt_energy import config

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "spark", help="run the Spark Structured Streaming job: Kafka → PostgreSQL usage, emissions, alerts",
        description="Reads kafka.readings_topic and kafka.devices_topic with the official Kafka connector and "
                    "writes exact monthly usage to PostgreSQL in one transaction per micro-batch. Resumes from "
                    "spark.checkpoint_dir after a restart.")
    add_env_flag(p, "--master", "APT_ENERGY_SPARK_MASTER", default=None,
                 help="Spark master URL, e.g. local[2] or spark://host:7077 (default spark.master)")
    add_env_flag(p, "--trigger", "APT_ENERGY_SPARK_TRIGGER_S", default=None, type=float,
                 help="micro-batch trigger interval in seconds (default spark.trigger_s)")
    add_env_flag(p, "--checkpoint", "APT_ENERGY_SPARK_CHECKPOINT_DIR", default=None,
                 help="checkpoint directory (default spark.checkpoint_dir)")
    p.add_argument("--no-notifier", action="store_true", help="do not run the Slack notifier in this process")
    add_env_flag(p, "--health-file", "APT_ENERGY_SPARK_HEALTH_FILE", default=None, type=Path,
                 help="touch this file every second while both streaming queries are alive (healthchecks)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from apt_energy.alerts.cli import outbox_counts
    from apt_energy.alerts.metrics import notifier_samples
    from apt_energy.spark.job import StreamJob, build_session, sink_options
    from apt_energy.spark.metrics import job_samples
    from apt_energy.stack.jars import spark_kafka_jars

    settings = config.load()
    changes = {k: v for k, v in (("master", args.master), ("trigger_s", args.trigger),
                                 ("checkpoint_dir", args.checkpoint)) if v is not None}
    if changes:
        settings = dataclasses.replace(settings, spark=dataclasses.replace(settings.spark, **changes))
    options = dataclasses.replace(sink_options(settings), rule_options={"projection": projection_options(settings)})
    spark = build_session(settings, jars=spark_kafka_jars(settings.cache_dir))
    job = StreamJob.from_settings(settings, spark, options=options)
    on_stop_signals(job.stop_event.set)
    notifier = None
    if not args.no_notifier:
        from apt_energy.alerts.cli import build_notifier

        notifier = build_notifier(settings)
        notifier.start_thread()
    job.start()
    m = settings.metrics
    def samples() -> list[Sample]:
        # The in-process notifier (compose runs no other) reports on the same endpoint.
        extra = notifier_samples(notifier.stats, outbox_counts(settings)) if notifier is not None else []
        return job_samples(job.stats, job.queries) + extra

    server = serve_if_enabled(m, m.spark_port, samples)
    try:
        job.run_until_stopped(health_file=args.health_file)
    finally:
        if server is not None:
            server.close()
        if notifier:
            notifier.stop()
        spark.stop()
    return 0


def projection_options(settings: Settings, *, first_year: int = 2000, last_year: int | None = None
                       ) -> ProjectionOptions | None:
    """The projection rule's plain data, composed here because the spark stage may not import billing:
    electricity's tier bands month by month (from the dated tariffs) and a bill estimate for the message."""
    from apt_energy.billing.cli import contract_areas, tariffs_for

    from apt_energy import billing

    rule = settings.rules.projection
    if not rule.tiers and not rule.thresholds:
        return None
    tariffs = tariffs_for(settings)
    last = last_year or datetime.now(UTC).year + 10
    months = [date(y, m, 1) for y in range(first_year, last + 1) for m in range(1, 13)]
    # the tier warning is the progressive tariff kind's, for the energy type billed on it
    tiered = tariffs.keys_of(billing.ProgressiveTariff)[:1]
    limits = (billing.tier_limits(tariffs.of(tiered[0], billing.ProgressiveTariff), months)
              if rule.tiers and tiered else {})
    areas = contract_areas(settings)
    # the complex's most common flat: the projection estimates a typical bill, not one household's
    area = max(areas.values(), key=list(areas.values()).count) if areas else None

    def estimate(energy: str, month: date, projected: float) -> float | None:
        try:
            bill = billing.bill_for(tariffs, energy, month, Decimal(str(round(projected, 3))),  # type: ignore[arg-type]
                                    contract_area_m2=area)
        except ConfigError:
            return None   # no tariff in force that month
        return float(bill.total)

    return ProjectionOptions(tier_limits={m: (float(a), float(b)) for m, (a, b) in limits.items()},
                             thresholds=dict(rule.thresholds), from_tier=rule.from_tier, min_days=rule.min_days,
                             model=rule.model, estimate_bill=estimate, **({"tier_meter": tiered[0]} if tiered else {}))
