"""Metrics: each stage's counters in Prometheus' text format, served on loopback only when enabled."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime

import pytest
from apt_energy.alerts.metrics import notifier_samples
from apt_energy.alerts.notifier import NotifierStats
from apt_energy.bridge.metrics import bridge_samples
from apt_energy.bridge.stats import BridgeStats
from apt_energy.config.settings import MetricsSettings
from apt_energy.core.metrics import Sample, collect, serve, serve_if_enabled
from apt_energy.edge.fleet import FleetStats
from apt_energy.edge.metrics import fleet_samples
from apt_energy.spark.job import JobStats
from apt_energy.spark.metrics import job_samples, progress_samples
from prometheus_client.parser import text_string_to_metric_families

from apt_energy import config


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if not s.name.endswith("_created")}


@pytest.mark.unit
def test_metrics_are_off_by_default_and_on_loopback_when_enabled() -> None:
    m = config.load(environ={}, dotenv=None).metrics
    assert not m.enabled and m.host == "127.0.0.1"
    assert serve_if_enabled(m, 0, lambda: []) is None


@pytest.mark.unit
def test_each_stage_reports_its_counters_under_one_prefix() -> None:
    bridge = BridgeStats(received=10, forwarded=9, dead_lettered=1, in_flight=3, subscribed=True)
    fleet = FleetStats(datetime(2024, 3, 1, tzinfo=UTC), devices=4, online=3, generated=100, acked=90, buffered=10,
                       dropped=0, bad_commands=2, real_s=1.0)
    job = JobStats(batches=2, rows=90, inserted=88, quarantined=2, alerts=1)
    samples = [*bridge_samples(bridge), *fleet_samples(fleet), *job_samples(job),
               *notifier_samples(NotifierStats(sent=1), {"pending": 2, "in_doubt": 1})]
    by_name = {(s.name, tuple(s.labels.items())): s.value for s in samples}
    assert by_name[("bridge_forwarded", ())] == 9 and by_name[("bridge_in_flight", ())] == 3
    assert by_name[("bridge_dead_lettered", ())] == 1 and by_name[("fleet_dropped", ())] == 0
    assert by_name[("spark_quarantined", ())] == 2 and by_name[("notifier_outbox", (("state", "in_doubt"),))] == 1
    assert all(s.kind in ("counter", "gauge") for s in samples)


@pytest.mark.unit
def test_the_stream_jobs_kafka_lag_comes_from_the_query_progress() -> None:
    progress = {"inputRowsPerSecond": 120.5, "processedRowsPerSecond": 300.0,
                "sources": [{"metrics": {"avgOffsetsBehindLatest": "12.5", "maxOffsetsBehindLatest": "40",
                                         "minOffsetsBehindLatest": "0"}}]}
    got = {s.name: s.value for s in progress_samples("readings", progress)}
    assert got == {"spark_input_rows_per_second": 120.5, "spark_processed_rows_per_second": 300.0,
                   "spark_kafka_lag_max": 40.0, "spark_kafka_lag_avg": 12.5}


@pytest.mark.unit
def test_families_group_samples_and_carry_the_process_labels() -> None:
    fams = collect([Sample("x", "gauge", "h", 1.0, {"state": "a"}), Sample("x", "gauge", "h", 2.0, {"state": "b"})],
                   constant={"part": "0/1"})
    assert len(fams) == 1 and [s.labels for s in fams[0].samples] == [{"part": "0/1", "state": "a"},
                                                                      {"part": "0/1", "state": "b"}]


def test_the_endpoint_serves_the_text_format_read_at_scrape_time() -> None:
    stats = BridgeStats()
    server = serve(lambda: bridge_samples(stats), host="127.0.0.1", port=0, constant={"part": "0/1"})
    try:
        first = values(urllib.request.urlopen(server.url, timeout=5).read().decode())
        stats.forwarded = 42
        second = values(urllib.request.urlopen(server.url, timeout=5).read().decode())
    finally:
        server.close()
    key = ("apt_bridge_forwarded_total", (("part", "0/1"),))
    assert first[key] == 0 and second[key] == 42      # no copy kept: the counters as they are now


@pytest.mark.unit
def test_a_port_out_of_range_is_refused_naming_the_key() -> None:
    from apt_energy.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"metrics\.bridge_port"):
        config.load(environ={"APT_ENERGY_METRICS_BRIDGE_PORT": "70000"}, dotenv=None)
    assert MetricsSettings().spark_port == 9466
