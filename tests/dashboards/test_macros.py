"""Grafana's SQL expansion: variables first, then the $__ macros over the panel's time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from apt_energy.dashboards.macros import InvalidInput, TimeRange, expand_macros, interpolate

pytestmark = pytest.mark.unit

RANGE = TimeRange(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, 12, 30, tzinfo=UTC))


def test_time_filter_is_a_between_over_rfc3339_utc_bounds() -> None:
    assert expand_macros("WHERE $__timeFilter(m.ts)", RANGE) == \
        "WHERE m.ts BETWEEN '2024-01-01T00:00:00Z' AND '2024-02-01T12:30:00Z'"


def test_time_from_and_to_are_quoted_literals_in_utc() -> None:
    seoul = TimeRange(datetime.fromisoformat("2024-01-01T09:00:00+09:00"), RANGE.end)
    assert expand_macros("$__timeFrom()::timestamptz, $__timeTo()", seoul) == \
        "'2024-01-01T00:00:00Z'::timestamptz, '2024-02-01T12:30:00Z'"


def test_time_group_alias_buckets_epoch_seconds_and_names_the_column_time() -> None:
    assert expand_macros("SELECT $__timeGroupAlias(ingested_at, '1m'), count(*)", RANGE) == \
        'SELECT floor(extract(epoch from ingested_at)/60)*60 AS "time", count(*)'
    assert expand_macros("$__timeGroup(date_trunc('hour', ts), '6h')", RANGE) == \
        "floor(extract(epoch from date_trunc('hour', ts))/21600)*21600"


def test_single_value_variables_go_in_raw_and_multi_values_as_a_quoted_list() -> None:
    sql = "b = $building AND h = ${unit} AND name = '[[name]]' AND k IN ($kinds)"
    out = interpolate(sql, {"building": "3", "unit": "1203", "name": "O'Brien", "kinds": ["a", "b'c"]},
                      multi=frozenset({"kinds"}))
    assert out == "b = 3 AND h = 1203 AND name = 'O''Brien' AND k IN ('a','b''c')"


def test_macros_survive_variable_interpolation() -> None:
    assert interpolate("$__timeFilter(ts) AND b = $b", {"b": "1"}) == "$__timeFilter(ts) AND b = 1"


def test_undefined_variables_and_unknown_macros_are_errors() -> None:
    with pytest.raises(InvalidInput, match=r"\$unit"):
        interpolate("h = $unit", {})
    with pytest.raises(InvalidInput, match="unknown macro"):
        expand_macros("$__timeWarp(ts)", RANGE)
    with pytest.raises(InvalidInput, match="interval"):
        expand_macros("$__timeGroup(ts, '1M')", RANGE)


def test_a_panel_relative_range_ends_now() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert TimeRange.last("1h", now=now) == TimeRange(now - timedelta(hours=1), now)


def test_percentencode_leaves_only_unreserved_characters_as_grafana_does() -> None:
    # encodeURIComponentStrict: ! ' ( ) * are encoded too, so nothing can close a literal or open a macro
    out = interpolate("x = '${v:percentencode}'", {"v": "1' OR $__timeFilter(t) (*!) 동"})
    assert out == "x = '1%27%20OR%20%24__timeFilter%28t%29%20%28%2A%21%29%20%EB%8F%99'"
    assert interpolate("'${v:percentencode}'", {"v": "1203"}) == "'1203'"
