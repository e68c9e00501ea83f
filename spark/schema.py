"""The Spark schema of a reading, derived from the message contract (``apt_energy/contract.py``).

``value``/``total`` are read as doubles so NaN and infinity can be recognised and quarantined, then
cast to DECIMAL(20, 6): the contract's numbers carry at most six decimals, so the cast is exact and
sums in PostgreSQL NUMERIC stay exact.
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime

from pyspark.sql.types import (
    DataType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from apt_energy.contract import MAX_DECIMALS, Reading

# Contract field type → Spark type as parsed from JSON (timestamps as text, checked separately).
_SPARK_TYPE: dict[object, DataType] = {str: StringType(), int: LongType(), float: DoubleType(), datetime: StringType()}
_NARROW = {"interval_s": IntegerType()}

EXACT = DecimalType(20, MAX_DECIMALS)


def reading_schema() -> StructType:
    hints = typing.get_type_hints(Reading)
    fields = [StructField(f.name, _NARROW.get(f.name, _SPARK_TYPE[hints[f.name]]), True)
              for f in dataclasses.fields(Reading)]
    return StructType(fields)


READING_SCHEMA = reading_schema()
REQUIRED = tuple(f.name for f in dataclasses.fields(Reading) if f.default is dataclasses.MISSING)

DEVICE_SCHEMA = StructType([
    StructField("device_id", StringType()),
    StructField("state", StringType()),
    StructField("ts", StringType()),
    StructField("firmware", StringType()),
    StructField("interval_s", IntegerType()),
])
