"""The stream job notices a dead streaming query (pure: stand-ins for ``StreamingQuery``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from apt_energy.spark.job import query_failure

pytestmark = pytest.mark.unit


@dataclass
class Query:
    isActive: bool
    error: BaseException | None = None

    def exception(self) -> BaseException | None:
        return self.error


class Gone:
    @property
    def isActive(self) -> bool:
        raise ConnectionError("Answer from Java side is empty\nmore")

    def exception(self) -> BaseException | None:
        raise AssertionError("not reached")


def test_a_running_query_is_not_dead() -> None:
    assert query_failure(Query(True)) is None


def test_a_query_that_failed_is_dead_with_the_first_line_of_its_error() -> None:
    assert query_failure(Query(False, RuntimeError("UndefinedTable: reading_staging\nstack"))) == \
        "UndefinedTable: reading_staging"


def test_a_query_that_ended_without_an_error_is_dead_unless_the_job_is_stopping() -> None:
    assert query_failure(Query(False)) == "stopped without an error"
    assert query_failure(Query(False), stopping=True) is None


def test_an_unreachable_jvm_counts_as_a_dead_query() -> None:
    assert query_failure(Gone()) == "unreachable (ConnectionError: Answer from Java side is empty)"


def test_a_wrapped_python_traceback_is_reported_by_its_innermost_error_line() -> None:
    wrapped = RuntimeError(
        "An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):\n"
        '  File "spark/job.py", line 200, in _readings_batch\n'
        "pyspark.errors.exceptions.captured.PythonException: An exception was thrown from the Python worker:\n"
        "Traceback (most recent call last):\n"
        "psycopg.OperationalError: connection failed: Connection refused\n"
        "\tIs the server running on that host and accepting TCP/IP connections?")
    assert query_failure(Query(False, wrapped)) == "psycopg.OperationalError: connection failed: Connection refused"
