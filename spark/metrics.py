"""The stream job's counters and its Kafka lag as Prometheus samples (read at scrape time)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from apt_energy.core.metrics import Sample
from apt_energy.spark.job import JobStats

logger = logging.getLogger(__name__)

__all__ = ["job_samples", "progress_samples"]


class _Query(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def lastProgress(self) -> Any: ...


def job_samples(stats: JobStats, queries: Iterable[_Query] = ()) -> list[Sample]:
    """``apt_spark_*``: batches, rows, inserted, quarantined, alerts, time spent, and per query its lag."""
    out = [
        Sample("spark_batches", "counter", "readings micro-batches merged", float(stats.batches)),
        Sample("spark_rows", "counter", "readings records read from Kafka", float(stats.rows)),
        Sample("spark_inserted", "counter", "readings stored (new to PostgreSQL)", float(stats.inserted)),
        Sample("spark_quarantined", "counter", "records quarantined with a reason", float(stats.quarantined)),
        Sample("spark_alerts", "counter", "alerts raised", float(stats.alerts)),
        Sample("spark_staging_seconds", "counter", "time the executors spent judging and staging",
               stats.staging_s),
        Sample("spark_merge_seconds", "counter", "time in the driver's merge transactions", stats.merge_s),
    ]
    for q in queries:
        try:
            progress = q.lastProgress
            data = json.loads(progress.json()) if progress is not None and hasattr(progress, "json") else progress
        except Exception as exc:  # noqa: BLE001 - a query stopping mid-scrape must not fail the scrape
            logger.debug("no progress query=%s error=%s", q.name, exc)
            continue
        if data:
            out += progress_samples(str(q.name), data)
    return out


def progress_samples(query: str, progress: Mapping[str, Any]) -> list[Sample]:
    """From one ``StreamingQueryProgress`` (as a dict): input/processing rates and the Kafka source's lag
    (offsets behind the latest, the connector's own ``maxOffsetsBehindLatest``/``avgOffsetsBehindLatest``)."""
    labels = {"query": query}
    out = [Sample("spark_input_rows_per_second", "gauge", "rows per second arriving (last batch)",
                  float(progress.get("inputRowsPerSecond") or 0.0), labels),
           Sample("spark_processed_rows_per_second", "gauge", "rows per second processed (last batch)",
                  float(progress.get("processedRowsPerSecond") or 0.0), labels)]
    for source in progress.get("sources") or []:
        metrics = source.get("metrics") or {}
        if "maxOffsetsBehindLatest" in metrics:
            out.append(Sample("spark_kafka_lag_max", "gauge", "most Kafka offsets behind the latest, of any partition",
                              float(metrics["maxOffsetsBehindLatest"]), labels))
            out.append(Sample("spark_kafka_lag_avg", "gauge", "Kafka offsets behind the latest, partition average",
                              float(metrics.get("avgOffsetsBehindLatest") or 0.0), labels))
    return out
