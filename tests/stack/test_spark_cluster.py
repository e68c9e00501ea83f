"""The Spark standalone cluster's pure parts: the master URL, worker ports, and which workers are alive."""

from __future__ import annotations

from pathlib import Path

import pytest
from apt_energy.stack.spark_cluster import SparkClusterOptions, alive_workers, spark_home

pytestmark = pytest.mark.unit


def test_workers_get_their_own_web_ui_ports_and_the_master_url_names_host_and_port(tmp_path: Path) -> None:
    o = SparkClusterOptions(directory=tmp_path, port=7177, webui_port=8180)
    assert o.master_url == "spark://127.0.0.1:7177"
    assert [o.worker_webui_port(i) for i in (1, 2)] == [8181, 8182]
    assert SparkClusterOptions(directory=tmp_path, worker_webui_ports=(9001, 9002)).worker_webui_port(2) == 9002


def test_only_workers_the_master_lists_as_alive_count() -> None:
    page = {"status": "ALIVE", "workers": [
        {"state": "ALIVE", "webuiaddress": "http://127.0.0.1:8181"},
        {"state": "DEAD", "webuiaddress": "http://127.0.0.1:8182"},
        {"state": "ALIVE", "webuiaddress": "garbage"}]}
    assert alive_workers(page) == {8181}
    assert alive_workers({}) == set()


def test_the_daemons_come_from_the_pyspark_distribution() -> None:
    assert (spark_home() / "bin" / "spark-class").exists()
    assert any((spark_home() / "jars").glob("spark-core_*.jar"))
