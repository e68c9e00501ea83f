from __future__ import annotations

import pytest
from pyspark.sql import SparkSession


@pytest.fixture
def local_spark(spark: SparkSession) -> SparkSession:
    return spark
