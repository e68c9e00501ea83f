"""The four dashboards, built from the complex's configuration (energy types, units, thresholds).

SQL notes that hold for every panel:
- ``energy_usage`` is monthly (``usage_date`` is the 1st, in the complex's time zone); a month counts
  when it overlaps the dashboard's time range, so a range starting mid-month still shows that month.
- ``energy_usage.energy_type`` holds the Korean label (the original design); alerts use the key.
- Emissions are stored in kg CO2e; the complex-level panels show tonnes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from apt_energy.config import ComplexSettings, EnergyType
from apt_energy.dashboards.grafana import JSON, Dashboard, Panel, Query, Variable, column_unit, thresholds
from apt_energy.rules import Registry
from apt_energy.rules import registry as rule_registry
from apt_energy.rules.threshold import Threshold

# Grafana unit ids for the configured units; anything else is shown as a suffix.
GRAFANA_UNITS = {"kWh": "kwatth", "m³": "m3", "kg CO2e": "masskg"}
TONNES = "suffix: t CO2e"
KG = "suffix: kg CO2e"
LINKS = ({"type": "dashboards", "tags": ["apt-energy"], "asDropdown": False, "includeVars": True,
          "keepTime": True, "title": "apt-energy"},)
BARS = {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1, "barAlignment": 0, "showPoints": "never"}
STACKED_BARS = {**BARS, "stacking": {"mode": "normal", "group": "A"}}
HEAT = {"cellOptions": {"type": "color-background", "mode": "gradient"}, "align": "center"}
# A viewer controls variable values (?var-building=… in the URL). Each use is '${name:percentencode}'::int:
# percent-encoding leaves only A-Z a-z 0-9 - _ . ~ (no quote to close the literal, no `$__macro(` for the
# backend to expand inside it), so a crafted value fails the ::int cast instead of running as SQL
# (tests/security/test_dashboards.py).
THE_BUILDING = "'${building:percentencode}'::int"
THE_UNIT = "'${unit:percentencode}'::int"
ONE_HOUSEHOLD = f"b.building_number = {THE_BUILDING} AND h.floor * 100 + h.unit = {THE_UNIT}"


def alert_unit(registry: Registry | None = None, alias: str = "a") -> str:
    """SQL: the unit an alert's value and limit are in. ``alerts.unit`` is the meter's; a rule that
    measures something else (night_flow: hours of flow) says so in its module."""
    registry = registry or rule_registry.current()
    cases = " ".join(f"WHEN '{name}' THEN '{rule.observed_unit}'" for rule in registry if rule.observed_unit
                     for name in rule.names)
    return f"CASE {alias}.rule {cases} ELSE {alias}.unit END" if cases else f"{alias}.unit"


def rules_described(registry: Registry | None = None) -> str:
    """The registered rules, one clause each, for a panel's description."""
    registry = registry or rule_registry.current()
    return "; ".join(f"{rule.key}: {rule.description}" for rule in registry)
BUILDING = Variable("building", "Building / 동", "SELECT building_number FROM buildings ORDER BY building_number")


@dataclass(frozen=True)
class DashboardInputs:
    """What the dashboards are built from, and nothing else: the complex (name, id, buildings, time
    zone), its energy table, the threshold rule's lines, and the energy types billed on the progressive
    tariff kind (their tier panel). Built at the CLI door (dashboards/cli.py) from settings + tariffs."""

    complex: ComplexSettings
    energy: Mapping[str, EnergyType]
    thresholds: Mapping[str, Threshold]
    tiered: tuple[str, ...] = ()


def grafana_unit(unit: str) -> str:
    return GRAFANA_UNITS.get(unit, f"suffix: {unit}")


def label(energy: EnergyType) -> str:
    return f"{energy.label_ko} {energy.label_en}"


class Sql:
    """SQL fragments that depend on the complex's time zone."""

    def __init__(self, tz: str) -> None:
        self.tz = tz

    def month_time(self, column: str) -> str:
        """A month-start DATE as the local midnight it stands for, named ``time`` for Grafana."""
        return f"({column}::timestamp AT TIME ZONE '{self.tz}') AS \"time\""

    def local_date(self, macro: str) -> str:
        return f"({macro}::timestamptz AT TIME ZONE '{self.tz}')::date"

    def months_in_range(self, column: str) -> str:
        """Month-start dates whose month overlaps the dashboard's time range."""
        return (f"{column} BETWEEN date_trunc('month', {self.local_date('$__timeFrom()')})::date "
                f"AND {self.local_date('$__timeTo()')}")

    def this_month(self, column: str) -> str:
        """Dates in the month that holds the end of the time range ("this month" when it ends now)."""
        return (f"{column} BETWEEN date_trunc('month', {self.local_date('$__timeTo()')})::date "
                f"AND {self.local_date('$__timeTo()')}")


def per_energy_columns(inputs: DashboardInputs, expr: str, *, scale: str = "") -> str:
    """One aggregated column per energy type, e.g. ``sum(u.amount) FILTER (WHERE …) AS "전력 Electricity"``."""
    return ",\n       ".join(
        f"sum({expr}) FILTER (WHERE u.energy_type = '{e.label_ko}'){scale} AS \"{label(e)}\""
        for e in inputs.energy.values())


KRW = "suffix: KRW"
BAND_NAMES = ("95% low", "80% low", "forecast", "80% high", "95% high")


def interval_overrides() -> tuple[JSON, ...]:
    """Forecast intervals as shaded bands: each high bound fills down to its low one, no lines drawn."""
    def band(high: str, low: str, opacity: int) -> JSON:
        return {"matcher": {"id": "byName", "options": high},
                "properties": [{"id": "custom.fillBelowTo", "value": low},
                               {"id": "custom.fillOpacity", "value": opacity},
                               {"id": "custom.lineWidth", "value": 0},
                               {"id": "color", "value": {"mode": "fixed", "fixedColor": "blue"}}]}

    def hidden_line(name: str) -> JSON:
        return {"matcher": {"id": "byName", "options": name},
                "properties": [{"id": "custom.lineWidth", "value": 0},
                               {"id": "custom.hideFrom", "value": {"legend": True, "tooltip": False, "viz": False}},
                               {"id": "color", "value": {"mode": "fixed", "fixedColor": "blue"}}]}

    forecast = {"matcher": {"id": "byName", "options": "forecast"},
                "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                               {"id": "color", "value": {"mode": "fixed", "fixedColor": "blue"}}]}
    actual = {"matcher": {"id": "byName", "options": "actual"},
              "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}},
                             {"id": "custom.lineWidth", "value": 2}]}
    return (band("95% high", "95% low", 12), band("80% high", "80% low", 25), hidden_line("95% low"),
            hidden_line("80% low"), forecast, actual)


def forecast_vs_actual(sql: Sql, key: str, e: EnergyType, *, level: str, series: str, actual_from: str,
                       actual_where: str, title: str, description: str) -> Panel:
    """Monthly actual usage beside the latest issue of the pooled forecast for each month (what each
    household is told; it sums to the building's and the complex's), with its 80 % and 95 % intervals.
    ``series``: SQL for the forecast series id; ``actual_from``/``actual_where``: the usage to sum
    (``u`` is energy_usage)."""
    return Panel(
        "timeseries", title, unit=grafana_unit(e.unit), width=8, description=description,
        custom={"drawStyle": "line", "showPoints": "always", "pointSize": 4, "spanNulls": False},
        overrides=interval_overrides(), query=Query(f"""
WITH f AS (
    SELECT DISTINCT ON (f.target_month) f.target_month AS month, f.point, f.lo80, f.hi80, f.lo95, f.hi95
    FROM usage_forecasts f
    WHERE f.level = '{level}' AND f.series_id = ({series}) AND f.energy_type = '{key}' AND f.model = 'pooled'
      AND {sql.months_in_range('f.target_month')}
    ORDER BY f.target_month, f.issued_at DESC),
a AS (
    SELECT u.usage_date AS month, sum(u.amount) AS amount
    {actual_from}
    WHERE u.energy_type = '{e.label_ko}' AND {actual_where} AND {sql.months_in_range('u.usage_date')}
    GROUP BY u.usage_date)
SELECT {sql.month_time('coalesce(a.month, f.month)')}, a.amount AS "actual", f.point AS "forecast",
       f.lo80 AS "80% low", f.hi80 AS "80% high", f.lo95 AS "95% low", f.hi95 AS "95% high"
FROM a FULL JOIN f ON f.month = a.month
ORDER BY 1""", "time_series"))


def per_key_columns(inputs: DashboardInputs, expr: str, key_column: str) -> str:
    """One summed column per energy type for tables keyed by the English key (bills, projections)."""
    return ",\n       ".join(f"sum({expr}) FILTER (WHERE {key_column} = '{k}') AS \"{label(e)}\""
                              for k, e in inputs.energy.items())


def overview(inputs: DashboardInputs) -> Dashboard:
    sql = Sql(inputs.complex.timezone)
    usage = tuple(
        Panel("timeseries", f"{label(e)} — monthly usage ({e.unit})", unit=grafana_unit(e.unit), width=8,
              description=f"Sum over all households of {e.label_en.lower()} per month.",
              custom=BARS, options={"legend": {"showLegend": False}},
              query=Query(f"""
SELECT {sql.month_time('u.usage_date')}, sum(u.amount) AS "{label(e)}"
FROM energy_usage u
WHERE u.energy_type = '{e.label_ko}' AND {sql.months_in_range('u.usage_date')}
GROUP BY 1 ORDER BY 1""", "time_series"))
        for e in inputs.energy.values())
    return Dashboard(
        uid="apt-energy-overview", title="apt-energy — complex overview / 단지 개요",
        description=f"{inputs.complex.name}: usage, emissions, alerts and pipeline health.", links=LINKS,
        panels=(
            Panel("stat", "Alerts this month / 이번 달 경보", unit="short", width=6, height=5,
                  description="Alerts for the month that holds the end of the time range.",
                  defaults={"color": {"mode": "thresholds"},
                            "thresholds": thresholds((None, "green"), (1, "orange"))},
                  query=Query(f"""
SELECT count(*) FILTER (WHERE severity = 'critical') AS "critical",
       count(*) FILTER (WHERE severity = 'warning') AS "warning"
FROM alerts WHERE {sql.this_month('period')}""")),
            Panel("stat", "Devices online / 연결된 기기", unit="short", width=6, height=5,
                  description="Gateways whose last status message said online, of all households.",
                  query=Query("""
SELECT (SELECT count(*) FROM devices WHERE state = 'online') AS "online",
       (SELECT count(*) FROM households) AS "households\"""")),
            Panel("stat", "Data freshness / 최신 데이터", unit="s", width=6, height=5,
                  description="Time since PostgreSQL last stored a reading (wall clock, whatever the range).",
                  defaults={"color": {"mode": "thresholds"},
                            "thresholds": thresholds((None, "green"), (120, "orange"), (900, "red"))},
                  query=Query("""
SELECT extract(epoch FROM now() - max(ingested_at)) AS "since last reading"
FROM meter_readings""")),
            Panel("stat", "Quarantined messages (24 h) / 격리된 메시지", unit="short", width=6, height=5,
                  time_from="24h", description="Bad input set aside by the stream job; reasons in the alerts "
                                                "dashboard. Dead letters from the bridge stay in Kafka.",
                  defaults={"color": {"mode": "thresholds"}, "thresholds": thresholds((None, "green"), (1, "red"))},
                  query=Query("""
SELECT count(*) AS "quarantined" FROM quarantine WHERE $__timeFilter(received_at)""")),
            *usage,
            Panel("timeseries", "Emissions by month / 월별 탄소 배출 (t CO2e)", unit=TONNES, width=12,
                  description="usage × emission factor in force that month, stacked by energy type.",
                  custom=STACKED_BARS, query=Query(f"""
SELECT {sql.month_time('u.usage_date')},
       {per_energy_columns(inputs, 'u.emission', scale=' / 1000')}
FROM energy_usage u
WHERE {sql.months_in_range('u.usage_date')}
GROUP BY 1 ORDER BY 1""", "time_series")),
            Panel("barchart", "Emissions by building / 동별 탄소 배출 (t CO2e)", unit=TONNES, width=12,
                  description="Over the time range, stacked by energy type.",
                  options={"xField": "building", "stacking": "normal", "legend": {"showLegend": True}},
                  query=Query(f"""
SELECT format('%s동', b.building_number) AS "building",
       {per_energy_columns(inputs, 'u.emission', scale=' / 1000')}
FROM energy_usage u
JOIN households h ON h.id = u.household_id
JOIN buildings b ON b.id = h.building_id
WHERE {sql.months_in_range('u.usage_date')}
GROUP BY b.building_number ORDER BY b.building_number""")),
            *(forecast_vs_actual(
                sql, key, e, level="complex", series=f"'{inputs.complex.id}'", actual_from="FROM energy_usage u",
                actual_where="true", title=f"{label(e)} — complex forecast vs actual ({e.unit})",
                description="All households' monthly total (green) and the latest pooled forecast issued for each "
                            "month (dashed), shaded with its 80 % and 95 % intervals (apt-energy forecast run).")
              for key, e in inputs.energy.items()),
            *(Panel("timeseries", f"Households by {inputs.energy[key].label_en.lower()} tier / 누진 단계별 세대",
                    unit="short", width=12,
                    description="Households billed in each progressive tier per month (bills; Jul–Aug bands "
                                "300/450 kWh, else 200/400). Run apt-energy bills compute to refresh.",
                    custom=STACKED_BARS, query=Query(f"""
SELECT {sql.month_time('usage_month')},
       count(*) FILTER (WHERE tier = 1) AS "tier 1 / 1단계",
       count(*) FILTER (WHERE tier = 2) AS "tier 2 / 2단계",
       count(*) FILTER (WHERE tier = 3) AS "tier 3 / 3단계"
FROM bills
WHERE energy_type = '{key}' AND {sql.months_in_range('usage_month')}
GROUP BY 1 ORDER BY 1""", "time_series"))
              for key in inputs.tiered),
            Panel("timeseries", "Energy bills by month / 월별 에너지 요금 (KRW)", unit=KRW, width=12,
                  description="Sum of every household's bill per month, stacked by energy type (bills).",
                  custom=STACKED_BARS, query=Query(f"""
SELECT {sql.month_time('usage_month')},
       {per_key_columns(inputs, 'total_krw', 'energy_type')}
FROM bills
WHERE {sql.months_in_range('usage_month')}
GROUP BY 1 ORDER BY 1""", "time_series")),
            Panel("timeseries", "Readings stored per minute (last hour) / 분당 저장된 검침값",
                  unit="suffix: /min", width=24, height=6, time_from="1h",
                  description="Pipeline throughput by the time PostgreSQL stored each reading.",
                  query=Query("""
SELECT $__timeGroupAlias(ingested_at, '1m'), count(*) AS "readings"
FROM meter_readings
WHERE $__timeFilter(ingested_at)
GROUP BY 1 ORDER BY 1""", "time_series")),
        ))


def building(inputs: DashboardInputs) -> Dashboard:
    sql = Sql(inputs.complex.timezone)
    widest = max(g.units_per_floor for g in inputs.complex.buildings)
    energies = list(inputs.energy.values())
    compare = tuple(
        Panel("timeseries", f"{label(e)} per household: this building vs complex ({e.unit})",
              unit=grafana_unit(e.unit), width=8, description="Average monthly usage per reporting household.",
              query=Query(f"""
SELECT {sql.month_time('u.usage_date')},
       avg(u.amount) FILTER (WHERE b.building_number = {THE_BUILDING}) AS "this building",
       avg(u.amount) AS "complex"
FROM energy_usage u
JOIN households h ON h.id = u.household_id
JOIN buildings b ON b.id = h.building_id
WHERE u.energy_type = '{e.label_ko}' AND {sql.months_in_range('u.usage_date')}
GROUP BY 1 ORDER BY 1""", "time_series"))
        for e in energies)
    heat_columns = ",\n       ".join(
        f"sum(u.emission) FILTER (WHERE h.unit = {n}) AS \"{n}호\"" for n in range(1, widest + 1))
    ranking_columns = ",\n       ".join(
        f"sum(u.amount) FILTER (WHERE u.energy_type = '{e.label_ko}') AS \"{label(e)}\"" for e in energies)
    return Dashboard(
        uid="apt-energy-building", title="apt-energy — building / 동별 비교",
        description="Households of one building compared over the time range.", links=LINKS,
        variables=(BUILDING,),
        panels=(
            Panel("table", "Floor heat-map: emissions per flat / 층별 탄소 배출 (kg CO2e)", unit=KG, width=10,
                  height=16, description="Rows are floors (top floor first), columns the unit on that floor.",
                  custom=HEAT, defaults={"color": {"mode": "continuous-GrYlRd"}, "decimals": 0},
                  overrides=({"matcher": {"id": "byName", "options": "floor 층"},
                              "properties": [{"id": "unit", "value": "none"},
                                             {"id": "custom.cellOptions", "value": {"type": "auto"}}]},),
                  query=Query(f"""
SELECT h.floor AS "floor 층",
       {heat_columns}
FROM households h
JOIN buildings b ON b.id = h.building_id
LEFT JOIN energy_usage u ON u.household_id = h.id AND {sql.months_in_range('u.usage_date')}
WHERE b.building_number = {THE_BUILDING}
GROUP BY h.floor ORDER BY h.floor DESC""")),
            Panel("table", "Households ranked by emissions / 세대별 순위", unit="none", width=14, height=16,
                  description="Usage and emissions over the time range; alerts raised for months in it.",
                  options={"sortBy": [{"displayName": "t CO2e", "desc": True}]},
                  overrides=(*(column_unit(label(e), grafana_unit(e.unit)) for e in energies),
                             column_unit("t CO2e", TONNES), column_unit("alerts", "short")),
                  query=Query(f"""
SELECT format('%s호', h.floor * 100 + h.unit) AS "unit 호",
       {ranking_columns},
       sum(u.emission) / 1000 AS "t CO2e",
       (SELECT count(*) FROM alerts a
         WHERE a.household_id = h.id AND {sql.months_in_range('a.period')}) AS "alerts"
FROM households h
JOIN buildings b ON b.id = h.building_id
LEFT JOIN energy_usage u ON u.household_id = h.id AND {sql.months_in_range('u.usage_date')}
WHERE b.building_number = {THE_BUILDING}
GROUP BY h.id, h.floor, h.unit
ORDER BY "t CO2e" DESC NULLS LAST""")),
            *compare,
        ))


def household(inputs: DashboardInputs) -> Dashboard:
    sql = Sql(inputs.complex.timezone)
    energies = list(inputs.energy.items())
    line = {"custom.drawStyle": "line", "custom.lineStyle": {"fill": "dash", "dash": [10, 10]}}

    def threshold_line(name: str, color: str) -> dict[str, object]:
        return {"matcher": {"id": "byName", "options": name},
                "properties": [{"id": k, "value": v} for k, v in line.items()]
                + [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}

    usage = []
    for key, e in energies:
        limit = inputs.thresholds.get(key)
        limits = (f",\n       {limit.warning} AS \"warning\", {limit.critical} AS \"critical\""
                  if limit else "")
        usage.append(Panel(
            "timeseries", f"{label(e)} — monthly usage vs thresholds ({e.unit})", unit=grafana_unit(e.unit),
            width=8, custom=BARS, description="Bars: this household. Dashed: the alert thresholds in config.",
            overrides=(threshold_line("warning", "orange"), threshold_line("critical", "red")) if limit else (),
            query=Query(f"""
SELECT {sql.month_time('u.usage_date')}, u.amount AS "usage"{limits}
FROM energy_usage u
JOIN households h ON h.id = u.household_id
JOIN buildings b ON b.id = h.building_id
WHERE u.energy_type = '{e.label_ko}' AND {ONE_HOUSEHOLD} AND {sql.months_in_range('u.usage_date')}
ORDER BY 1""", "time_series")))
    forecasts = tuple(forecast_vs_actual(
        sql, key, e, level="household", actual_where=ONE_HOUSEHOLD,
        series=f"SELECT h.device_id FROM households h JOIN buildings b ON b.id = h.building_id WHERE {ONE_HOUSEHOLD}",
        actual_from="FROM energy_usage u JOIN households h ON h.id = u.household_id "
                    "JOIN buildings b ON b.id = h.building_id",
        title=f"{label(e)} — forecast vs actual ({e.unit})",
        description="This flat's monthly usage (green) and the latest pooled forecast issued for each month "
                    "(dashed), shaded with its 80 % and 95 % intervals.")
        for key, e in energies)
    energy_label = "CASE " + " ".join(f"WHEN x.energy_type = '{k}' THEN '{label(e)}'" for k, e in energies) + " END"
    return Dashboard(
        uid="apt-energy-household", title="apt-energy — household / 세대 상세",
        description="One flat: monthly usage against the alert thresholds, emissions, readings and alerts.",
        links=LINKS,
        variables=(
            BUILDING,
            Variable("unit", "Unit / 호", f"""
SELECT h.floor * 100 + h.unit FROM households h JOIN buildings b ON b.id = h.building_id
WHERE b.building_number = {THE_BUILDING} ORDER BY h.floor, h.unit"""),
        ),
        panels=(
            *usage,
            *forecasts,
            Panel("stat", "Projected bill this month / 이번 달 예상 요금", unit=KRW, width=8, height=8,
                  description="For the month that holds the end of the time range: usage so far plus the "
                              "forecast's share of the days left, billed with that month's tariffs (projected "
                              "electricity tier in the table beside). apt-energy bills compute refreshes it.",
                  options={"reduceOptions": {"values": False, "calcs": ["lastNotNull"], "fields": ""},
                           "colorMode": "none", "graphMode": "none", "textMode": "value_and_name"},
                  query=Query(f"""
SELECT {per_key_columns(inputs, 'p.total_krw', 'p.energy_type')},
       sum(p.total_krw) AS "total"
FROM bill_projections p
JOIN households h ON h.id = p.household_id
JOIN buildings b ON b.id = h.building_id
WHERE {ONE_HOUSEHOLD} AND {sql.this_month('p.usage_month')}""")),
            Panel("table", "Bills by month / 월별 요금", unit="none", width=16, height=8,
                  description="This flat's statements (apt-energy bills show) and, for the month that holds "
                              "the end of the range, the projection (usage so far + forecast).",
                  overrides=(column_unit("bill", KRW), column_unit("usage", "none")),
                  query=Query(f"""
SELECT x.month AS "month", {energy_label} AS "energy", x.usage AS "usage", et.unit AS "unit",
       x.tier AS "tier 누진", x.total_krw AS "bill", x.kind AS "kind"
FROM (SELECT household_id, energy_type, usage_month AS month, usage, tier, total_krw, 'billed' AS kind FROM bills
      UNION ALL
      SELECT household_id, energy_type, usage_month, projected, tier, total_krw, 'projected' FROM bill_projections
      WHERE {sql.this_month('usage_month')}) x
JOIN households h ON h.id = x.household_id
JOIN buildings b ON b.id = h.building_id
JOIN energy_types et ON et.key = x.energy_type
WHERE {ONE_HOUSEHOLD} AND {sql.months_in_range('x.month')}
ORDER BY x.month DESC, x.kind, x.energy_type""")),
            Panel("timeseries", "Emissions by month / 월별 탄소 배출 (kg CO2e)", unit=KG, width=12,
                  custom=STACKED_BARS, query=Query(f"""
SELECT {sql.month_time('u.usage_date')},
       {per_energy_columns(inputs, 'u.emission')}
FROM energy_usage u
JOIN households h ON h.id = u.household_id
JOIN buildings b ON b.id = h.building_id
WHERE {ONE_HOUSEHOLD} AND {sql.months_in_range('u.usage_date')}
GROUP BY 1 ORDER BY 1""", "time_series")),
            Panel("table", "Gateway / 월패드 게이트웨이", unit="none", width=12,
                  description="The household's device as its last status and meta messages described it.",
                  overrides=(column_unit("interval", "s"), column_unit("last seen", "dateTimeAsIso")),
                  query=Query(f"""
SELECT h.device_id AS "device", coalesce(d.state, 'never seen') AS "state", d.last_seen AS "last seen",
       d.firmware AS "firmware", d.interval_s AS "interval"
FROM households h
JOIN buildings b ON b.id = h.building_id
LEFT JOIN devices d ON d.device_id = h.device_id
WHERE {ONE_HOUSEHOLD}""")),
            Panel("table", "Missing intervals / 누락 검침 구간", unit="none", width=12,
                  description="Per month and meter: hours the database expects (from the meter's first reading, "
                              "to the complex's latest in the month in progress) and hours measured "
                              "(month_completeness). A month missing hours is billed as estimated.",
                  query=Query(f"""
SELECT c.usage_month AS "month", et.label_ko || ' ' || et.label_en AS "energy",
       round(c.expected_s / 3600.0, 1) AS "expected h", round(c.measured_s / 3600.0, 1) AS "measured h",
       round(GREATEST(c.expected_s - c.measured_s, 0) / 3600.0, 1) AS "missing h"
FROM month_completeness c
JOIN households h ON h.id = c.household_id
JOIN buildings b ON b.id = h.building_id
JOIN energy_types et ON et.key = c.meter
WHERE {ONE_HOUSEHOLD} AND {sql.months_in_range('c.usage_month')}
ORDER BY c.usage_month DESC, c.meter""")),
            Panel("table", "Recent readings / 최근 검침값", unit="none", width=12, height=10,
                  description="The last 100 readings in the time range; value is per reading interval.",
                  overrides=(column_unit("value", "none"), column_unit("time", "dateTimeAsIso")),
                  query=Query(f"""
SELECT m.ts AS "time", et.label_ko || ' ' || et.label_en AS "energy", m.value AS "value",
       et.unit AS "unit", m.seq AS "seq", m.ingested_at AS "stored"
FROM meter_readings m
JOIN households h ON h.id = m.household_id
JOIN buildings b ON b.id = h.building_id
JOIN energy_types et ON et.key = m.meter
WHERE {ONE_HOUSEHOLD} AND $__timeFilter(m.ts)
ORDER BY m.ts DESC, m.meter LIMIT 100""")),
            Panel("table", "Alerts for this flat / 세대 경보", unit="none", width=12, height=10,
                  query=Query(f"""
SELECT a.period AS "period", et.label_ko || ' ' || et.label_en AS "energy", a.rule AS "rule",
       a.severity AS "severity", a.observed AS "value", a.reference AS "limit",
       {alert_unit()} AS "unit",
       a.state AS "state"
FROM alerts a
JOIN households h ON h.id = a.household_id
JOIN buildings b ON b.id = h.building_id
JOIN energy_types et ON et.key = a.energy_type
WHERE {ONE_HOUSEHOLD} AND {sql.months_in_range('a.period')}
ORDER BY a.period DESC, a.id DESC""")),
        ))


def alerts(inputs: DashboardInputs) -> Dashboard:
    sql = Sql(inputs.complex.timezone)
    in_range = sql.months_in_range("a.period")
    return Dashboard(
        uid="apt-energy-alerts", title="apt-energy — alerts / 경보",
        description="Every alert raised for the time range and what happened to its Slack message.", links=LINKS,
        panels=(
            Panel("stat", "Slack delivery / 슬랙 전송", unit="short", width=12, height=5,
                  description="Notifications (raised and resolved) for alerts in the range, by delivery state.",
                  query=Query(f"""
SELECT count(*) FILTER (WHERE n.state IN ('sent', 'console')) AS "delivered",
       count(*) FILTER (WHERE n.state IN ('pending', 'sending')) AS "waiting",
       count(*) FILTER (WHERE n.state = 'failed') AS "failed"
FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id
WHERE {in_range}""")),
            Panel("bargauge", "Alerts by rule / 규칙별 경보", unit="short", width=12, height=5,
                  description=f"Alerts in the range per rule and severity. The rules: "
                              f"{rules_described()}.",
                  options={"reduceOptions": {"values": True, "calcs": [], "fields": "/^alerts$/"},
                           "orientation": "horizontal", "displayMode": "basic"},
                  query=Query(f"""
SELECT a.rule || ' · ' || a.severity AS "rule", count(*) AS "alerts"
FROM alerts a WHERE {in_range}
GROUP BY a.rule, a.severity ORDER BY 2 DESC""")),
            Panel("table", "Alerts / 경보 목록", unit="none", width=24, height=14,
                  description="Newest first. delivery is the state of the alert's latest Slack notification.",
                  overrides=(column_unit("raised", "dateTimeAsIso"), column_unit("attempts", "short")),
                  query=Query(f"""
SELECT a.raised_at AS "raised", a.period AS "period",
       format('%s동 %s호', b.building_number, h.floor * 100 + h.unit) AS "household",
       et.label_ko || ' ' || et.label_en AS "energy", a.rule AS "rule", a.severity AS "severity",
       a.observed AS "value", a.reference AS "limit",
       {alert_unit()} AS "unit",
       CASE WHEN a.state = 'resolved' THEN 'resolved' || CASE WHEN a.resolved_by IS NULL THEN ' (rule)'
                                                             ELSE ' by ' || a.resolved_by END
            WHEN a.acknowledged_by IS NOT NULL THEN 'acknowledged by ' || a.acknowledged_by
            ELSE 'raised' END
         || CASE a.escalation WHEN 1 THEN ' · reminded' WHEN 2 THEN ' · escalated' ELSE '' END AS "state",
       coalesce(a.assignee, '-') AS "assignee",
       extract(epoch FROM a.acknowledged_at - a.raised_at) / 60 AS "time to acknowledge (min)",
       coalesce(n.state, '-') AS "delivery", coalesce(n.attempts, 0) AS "attempts", n.last_error AS "last error"
FROM alerts a
JOIN households h ON h.id = a.household_id
JOIN buildings b ON b.id = h.building_id
JOIN energy_types et ON et.key = a.energy_type
LEFT JOIN LATERAL (SELECT state, attempts, last_error FROM alert_notifications
                   WHERE alert_id = a.id ORDER BY id DESC LIMIT 1) n ON true
WHERE {in_range}
ORDER BY a.raised_at DESC, a.id DESC LIMIT 500""")),
            Panel("stat", "Alert cases / 경보 처리", unit="short", width=12, height=5,
                  description="Alerts raised in the range: acknowledged, escalated (nobody acknowledged within "
                              "alerts.escalate_after_min), resolved, still open; median minutes to acknowledge.",
                  query=Query(f"""
SELECT count(*) AS "raised", count(a.acknowledged_at) AS "acknowledged",
       count(*) FILTER (WHERE a.escalation > 0) AS "escalated",
       count(*) FILTER (WHERE a.state = 'resolved') AS "resolved",
       count(*) FILTER (WHERE a.state = 'active') AS "open",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.acknowledged_at - a.raised_at) / 60)
           AS "median min to ack"
FROM alerts a WHERE {in_range}""")),
            Panel("table", "Notifier health / 알림 발송기 상태", unit="none", width=12, height=5,
                  description="Each notifier as it reports itself: the transport configured in its own process, "
                              "its heartbeat, and a problem it cannot get past with the fix in one line.",
                  overrides=(column_unit("heartbeat (s ago)", "s"),),
                  query=Query("""
SELECT owner AS "notifier", CASE WHEN stopped_at IS NOT NULL THEN 'stopped'
                                 WHEN heartbeat_at < now() - interval '60 seconds' THEN 'silent'
                                 ELSE 'running' END AS "state",
       transport AS "transport", destination AS "destination",
       extract(epoch FROM now() - heartbeat_at) AS "heartbeat (s ago)", in_doubt AS "in doubt",
       coalesce(problem, 'ok') AS "problem", coalesce(fix, '-') AS "fix"
FROM (SELECT * FROM notifier_status ORDER BY heartbeat_at DESC LIMIT 10) s
UNION ALL
SELECT '-', 'none', '-', '-', NULL, 0, 'no notifier has run on this database',
       'start one: apt-energy notifier (or apt-energy pipeline up)'
WHERE NOT EXISTS (SELECT 1 FROM notifier_status)""")),
            Panel("table", "Quarantine reasons (7 days) / 격리 사유", unit="none", width=24, height=7,
                  time_from="7d", description="Input the stream job could not use, by reason, as it arrived "
                                               "(each row is kept with its Kafka coordinates).",
                  overrides=(column_unit("messages", "short"), column_unit("last", "dateTimeAsIso")),
                  query=Query("""
SELECT reason AS "reason", count(*) AS "messages", max(received_at) AS "last"
FROM quarantine WHERE $__timeFilter(received_at)
GROUP BY reason ORDER BY 2 DESC""")),
        ))


def all_dashboards(inputs: DashboardInputs) -> list[Dashboard]:
    return [overview(inputs), building(inputs), household(inputs), alerts(inputs)]
