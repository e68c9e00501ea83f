"""Spark types derived from the message contract (``core/contract.py``), checked by one test.

:data:`READING_SCHEMA` has one field per :class:`~apt_energy.core.contract.Reading` field, typed from the
dataclass hints and the contract's integer widths (``INTEGER_BITS``: BIGINT → long, INTEGER → int).
``value``/``total`` travel as doubles and are cast to :data:`EXACT`, DECIMAL(20, 6): the contract keeps
them below 1e9 with at most six decimals (15 significant digits), so the cast is exact and sums in
PostgreSQL NUMERIC stay exact.
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime

from apt_energy.core.contract import INTEGER_BITS, MAX_DECIMALS, Reading
from pyspark.sql.types import (
    DataType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

__all__ = ["DEVICE_CHECK_SCHEMA", "EXACT", "READING_SCHEMA", "VALIDATED_READING_SCHEMA", "reading_schema"]

_SPARK_TYPE: dict[object, DataType] = {str: StringType(), float: DoubleType(), datetime: TimestampType()}
_INTEGER: dict[int, DataType] = {32: IntegerType(), 64: LongType()}

EXACT = DecimalType(20, MAX_DECIMALS)


def _spark_type(name: str, hint: object) -> DataType:
    if hint is int:
        return _INTEGER[INTEGER_BITS[name]]
    return _SPARK_TYPE[hint]


def reading_schema() -> StructType:
    """The contract's reading as a Spark struct (every field nullable: a rejected record has none)."""
    hints = typing.get_type_hints(Reading)
    return StructType([StructField(f.name, _spark_type(f.name, hints[f.name]), True)
                       for f in dataclasses.fields(Reading)])


READING_SCHEMA = reading_schema()
# What the validating UDF returns: the reading's fields, or NULLs and the contract's reason.
VALIDATED_READING_SCHEMA = StructType([*READING_SCHEMA.fields, StructField("reason", StringType(), True)])
# What the device-topic UDF returns (status and meta share the devices topic).
DEVICE_CHECK_SCHEMA = StructType([
    StructField("state", StringType()),
    StructField("firmware", StringType()),
    StructField("interval_s", IntegerType()),
    StructField("reason", StringType()),
])
