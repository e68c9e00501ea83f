"""``apt-energy spark``: run the streaming job (and the Slack notifier beside it)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from apt_energy import config
from apt_energy.cliutil import add_env_flag, on_stop_signals

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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from apt_energy.spark.job import StreamJob, build_session
    from apt_energy.stack.jars import spark_kafka_jars

    settings = config.load()
    changes = {k: v for k, v in (("master", args.master), ("trigger_s", args.trigger),
                                 ("checkpoint_dir", args.checkpoint)) if v is not None}
    if changes:
        settings = dataclasses.replace(settings, spark=dataclasses.replace(settings.spark, **changes))
    spark = build_session(settings, jars=spark_kafka_jars(settings.cache_dir))
    job = StreamJob(settings, spark)
    on_stop_signals(job.stop_event.set)
    notifier = None
    if not args.no_notifier:
        from apt_energy.alerts.cli import build_notifier

        notifier = build_notifier(settings)
        notifier.start_thread()
    job.start()
    try:
        job.run_until_stopped()
    finally:
        if notifier:
            notifier.stop()
        spark.stop()
    return 0
