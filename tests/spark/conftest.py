from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from apt_energy import config


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One SparkSession for the whole run (a JVM holds one): local, with the Kafka connector jars.
    Unit tests use it over static DataFrames; integration tests run the stream job on it."""
    from apt_energy.spark.job import build_session
    from apt_energy.stack.jars import spark_kafka_jars

    settings = config.load()
    session = build_session(settings, jars=spark_kafka_jars(settings.cache_dir))
    yield session
    session.stop()


@pytest.fixture
def local_spark(spark: SparkSession) -> SparkSession:
    return spark
