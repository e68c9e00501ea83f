"""Expand a panel's SQL the way Grafana's PostgreSQL datasource does before it reaches the database.

Two steps, in Grafana's order: the frontend replaces template variables (``$building``, ``${building}``,
``[[building]]``; a single-value variable goes in raw with quotes doubled, a multi-value one as a quoted
comma-separated list), then the backend replaces the ``$__`` macros using the panel's time range. The
expansions follow Grafana's ``pkg/tsdb/grafana-postgresql-datasource/macros.go``: ``$__timeFilter(c)`` is
``c BETWEEN '<from>' AND '<to>'`` with RFC 3339 UTC times, ``$__timeGroup(c, '5m')`` is
``floor(extract(epoch from c)/300)*300``, the ``…Alias`` forms add ``AS "time"``.

Used by the tests and ``apt-energy dashboards check`` to run every panel's SQL against PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from apt_energy.core.errors import InvalidInput

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MACRO = re.compile(r"\$__(\w+)\(")
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @classmethod
    def last(cls, span: str, *, now: datetime | None = None) -> TimeRange:
        """A panel's relative ``timeFrom`` such as ``"1h"`` or ``"24h"``, ending now."""
        end = now or datetime.now(UTC)
        return cls(end - timedelta(seconds=interval_seconds(span)), end)


def interval_seconds(text: str) -> float:
    match = re.fullmatch(r"\s*'?(\d+)(ms|s|m|h|d|w)'?\s*", text)
    if not match:
        raise InvalidInput(f"interval {text!r}: expected a number and one of {', '.join(_UNITS)} (e.g. '5m')")
    return int(match.group(1)) * _UNITS[match.group(2)]


def rfc3339(t: datetime) -> str:
    if t.tzinfo is None:
        raise InvalidInput("time range bounds must be timezone-aware")
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def interpolate(sql: str, variables: Mapping[str, str | Sequence[str]], *, multi: frozenset[str] = frozenset()) -> str:
    """Template variables, as Grafana's SQL datasources format them."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        fmt = match.group(2)
        if name.startswith("__"):
            return match.group(0)  # a macro or built-in, handled later
        if name not in variables:
            raise InvalidInput(f"variable ${name} is used but not defined")
        v = variables[name]
        if fmt == "percentencode":
            # Grafana's encodeURIComponentStrict: only A-Z a-z 0-9 - _ . ~ survive, so the value can carry
            # neither a quote nor a `$__macro(` into the SQL the backend expands next.
            return quote("{" + ",".join(v) + "}" if not isinstance(v, str) else v, safe="-_.~")
        if fmt not in (None, "raw", "sqlstring", "singlequote"):
            raise InvalidInput(f"variable format :{fmt} is not one the checker knows")
        if isinstance(v, str) and name not in multi:
            return v.replace("'", "''")
        items = [v] if isinstance(v, str) else list(v)
        return ",".join("'" + item.replace("'", "''") + "'" for item in items)

    return _VARIABLE.sub(value, sql)


def expand_macros(sql: str, time_range: TimeRange, *, interval_s: float = 60) -> str:
    """``$__`` macros with balanced-parenthesis arguments, then ``$__interval``/``$__interval_ms``."""
    out, pos = [], 0
    for match in _MACRO.finditer(sql):
        if match.start() < pos:
            continue  # inside an argument already consumed
        args, end = _arguments(sql, match.end())
        out.append(sql[pos:match.start()])
        out.append(_macro(match.group(1), args, time_range))
        pos = end
    out.append(sql[pos:])
    text = "".join(out)
    text = text.replace("$__interval_ms", str(int(interval_s * 1000)))
    return text.replace("$__interval", f"{int(interval_s)}s")


def _arguments(sql: str, start: int) -> tuple[list[str], int]:
    depth, i = 0, start
    current: list[str] = []
    args: list[str] = []
    while i < len(sql):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                args.append("".join(current).strip())
                return ([] if args == [""] else args), i + 1
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    raise InvalidInput(f"unclosed macro arguments: {sql[start - 20:start + 40]!r}")


def _macro(name: str, args: list[str], r: TimeRange) -> str:
    def need(n: int) -> None:
        if len(args) < n:
            raise InvalidInput(f"$__{name} needs {n} argument(s), got {len(args)}")

    if name == "timeFilter":
        need(1)
        return f"{args[0]} BETWEEN '{rfc3339(r.start)}' AND '{rfc3339(r.end)}'"
    if name == "timeFrom":
        return f"'{rfc3339(r.start)}'"
    if name == "timeTo":
        return f"'{rfc3339(r.end)}'"
    if name == "time":
        need(1)
        return f'{args[0]} AS "time"'
    if name == "timeEpoch":
        need(1)
        return f'extract(epoch from {args[0]}) as "time"'
    if name in ("timeGroup", "timeGroupAlias"):
        need(2)
        s = interval_seconds(args[1])
        group = f"floor(extract(epoch from {args[0]})/{s:g})*{s:g}"
        return group + (' AS "time"' if name == "timeGroupAlias" else "")
    if name == "unixEpochFilter":
        need(1)
        return f"{args[0]} >= {int(r.start.timestamp())} AND {args[0]} <= {int(r.end.timestamp())}"
    raise InvalidInput(f"unknown macro $__{name}")
