"""Log lines carry an ISO 8601 time with its zone; logs go to stderr; ``--json`` output is plain data."""

from __future__ import annotations

import json
import logging
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import pytest
from apt_energy.core import logs
from apt_energy.core.cliutil import jsonable, print_json

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_every_log_line_starts_with_an_iso_time_with_zone(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO")
    logging.getLogger("apt_energy.test").warning("forwarded device=%s offset=%d", "hanbit-01-101", 7)
    out, err = capsys.readouterr()
    assert out == ""                                   # logs never mix into a command's data on stdout
    stamp, rest = err.strip().split(" ", 1)
    when = datetime.fromisoformat(stamp)
    assert when.utcoffset() == timedelta(0) and "T" in stamp
    assert abs((datetime.now(when.tzinfo) - when).total_seconds()) < 60
    assert rest.split() == ["WARNING", "apt_energy.test:", "forwarded", "device=hanbit-01-101", "offset=7"]


def test_the_jvm_logs_use_the_same_iso_time_with_zone() -> None:
    from apt_energy.stack.kafka import render_log4j2

    iso = "%d{yyyy-MM-dd'T'HH:mm:ss.SSSXXX}{UTC}"
    for text in ((ROOT / "config" / "spark-log4j2.properties").read_text(),
                 (ROOT / "config" / "spark-log4j2-stream.properties").read_text(), render_log4j2(Path("/x.log"))):
        patterns = [line for line in text.splitlines() if "layout.pattern" in line]
        assert patterns and all(iso in line for line in patterns), patterns


class Row(NamedTuple):
    month: date
    total: Decimal
    at: datetime


def test_json_output_writes_rows_as_objects_with_exact_decimals(capsys: pytest.CaptureFixture[str]) -> None:
    at = datetime.fromisoformat("2026-01-31T15:00:00+00:00")
    print_json({"rows": [Row(date(2026, 1, 1), Decimal("12345.678"), at)], "n": 1})
    data = json.loads(capsys.readouterr().out)
    assert data == {"rows": [{"month": "2026-01-01", "total": "12345.678", "at": "2026-01-31T15:00:00+00:00"}],
                    "n": 1}
    assert jsonable((Row(date(2026, 2, 1), Decimal(1), at),)) == [
        {"month": "2026-02-01", "total": "1", "at": at.isoformat()}]


def test_no_module_writes_colour_codes_that_would_ignore_no_color() -> None:
    # The CLI prints no colour; anyone adding ANSI colour must honour NO_COLOR (https://no-color.org).
    escape = re.compile(r"\\(x1b|033|u001b)\[|\x1b\[")
    for folder in ("apt_energy", "edge", "bridge", "spark", "alerts", "billing", "stack", "dashboards", "forecast",
                   "database", "config"):
        for path in (ROOT / folder).glob("*.py"):
            text = path.read_text(encoding="utf-8")
            if escape.search(text):
                assert "NO_COLOR" in text, f"{path} writes ANSI colour without honouring NO_COLOR"


def test_iso_now_is_utc_with_offset() -> None:
    assert logs.iso_now().endswith("+00:00")
