"""Small helpers shared by the component CLIs: flags whose defaults come from the environment,
durations like ``1h``, and signal handling that asks a loop to stop."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` → seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration such as 15m, 1h or 3600, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def local_date(text: str) -> datetime:
    """``2024-01-01``, an ISO time or ``now``; without a zone it is read in the complex's zone (:func:`in_zone`)."""
    if text == "now":
        return datetime.now(UTC)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2024-01-01 or now, got {text!r}") from None


def in_zone(value: datetime, tz: ZoneInfo) -> datetime:
    """A naive time read in ``tz``, as UTC."""
    return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)


def add_months(start_utc: datetime, months: int, tz: ZoneInfo) -> datetime:
    """``months`` calendar months after ``start_utc``, counted in the complex's local calendar."""
    local = start_utc.astimezone(tz)
    y, m = divmod(local.month - 1 + months, 12)
    return local.replace(year=local.year + y, month=m + 1).astimezone(UTC)


def add_env_flag(parser: argparse.ArgumentParser, flag: str, env: str, *, default: Any, help: str,
                 type: Callable[[str], Any] = str, **kwargs: Any) -> None:
    """A flag whose default is read from ``env``: CLI flag > environment > built-in default."""
    raw = os.environ.get(env)
    value = default
    if raw is not None and raw != "":
        try:
            value = type(raw)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            parser.error(f"environment {env}: {exc}")
    shown = default if not isinstance(default, int | float | str) else f"{default}"
    parser.add_argument(flag, default=value, type=type, help=f"{help} (env: {env}; default: {shown})", **kwargs)


def on_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask the loop to stop; a second SIGINT interrupts at once."""
    def handler(signum: int, frame: object) -> None:
        stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def jsonable(value: object) -> object:
    """``value`` with rows (NamedTuple, dataclass) as objects, times as ISO 8601 text, decimals as exact
    strings ("12345.678", not a float): ``json.dumps`` would write a NamedTuple as a bare list."""
    if hasattr(value, "_asdict"):
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()           # datetimes from the database carry their zone
    if isinstance(value, Decimal):
        return str(value)
    return value


def print_json(data: object) -> None:
    """``--json`` output: one JSON document on stdout (logs and errors stay on stderr), so scripts can
    ``| jq``; see :func:`jsonable` for the forms."""
    json.dump(jsonable(data), sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
