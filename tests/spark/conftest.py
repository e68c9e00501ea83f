from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

import config


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One SparkSession for the whole run (a JVM holds one): local, with the Kafka connector jars.
    Unit tests use it over static DataFrames; integration tests run the stream job on it."""
    from spark.job import build_session

    session = build_session(config.load())
    yield session
    session.stop()


@pytest.fixture
def local_spark(spark: SparkSession) -> SparkSession:
    return spark
