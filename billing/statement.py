"""A household's monthly statement as one self-contained HTML page (inline CSS and SVG, no external
asset, one A4 page when printed), in Korean or English. Pure: :class:`Statement` in, HTML text out; the
figures come from billing/statement_source.py.

Every figure a reader checks carries a ``data-*`` attribute (``data-total``, ``data-usage``,
``data-figure``) so a browser test can compare the rendered text with the bills.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

logger = logging.getLogger(__name__)

Lang = Literal["ko", "en"]
LANGS: tuple[Lang, ...] = ("ko", "en")

_TEXT: dict[str, dict[Lang, str]] = {
    "title": {"ko": "관리비 에너지 명세서", "en": "Monthly energy statement"},
    "flat": {"ko": "{building}동 {door}호", "en": "Building {building}, unit {door}"},
    "period": {"ko": "사용 기간", "en": "Billing period"},
    "due": {"ko": "에너지 요금 합계", "en": "Energy charges, total"},
    "energy": {"ko": "에너지", "en": "Energy"},
    "usage": {"ko": "사용량", "en": "Usage"},
    "last_year": {"ko": "작년 같은 달", "en": "Same month last year"},
    "peers": {"ko": "같은 평형 평균", "en": "Average, same unit type"},
    "emission": {"ko": "탄소 배출", "en": "Emissions"},
    "bill": {"ko": "요금", "en": "Charge"},
    "tier": {"ko": "누진 {tier}단계", "en": "tier {tier}"},
    "lines": {"ko": "요금 내역", "en": "How the charge is made up"},
    "history": {"ko": "최근 13개월 사용량 (진한 막대: 이번 달과 작년 같은 달)",
                "en": "Usage over 13 months (dark: this month and the same month last year)"},
    "compare": {"ko": "같은 평형 ({unit_type}) {n}세대 평균과 비교",
                "en": "Against the {n} flats of unit type {unit_type}"},
    "this_flat": {"ko": "우리 집", "en": "This flat"},
    "average": {"ko": "평균", "en": "Average"},
    "projection": {"ko": "이번 달 예상", "en": "This month's projection"},
    "projected": {"ko": "예상 사용량 {usage} {unit}, 예상 요금 {bill}원 ({days:.0f}일 경과)",
                  "en": "projected {usage} {unit}, projected charge {bill} KRW ({days:.0f} days in)"},
    "no_projection": {"ko": "예상 없음", "en": "no projection"},
    "completeness": {"ko": "검침 완전성", "en": "Metering completeness"},
    "complete": {"ko": "완전", "en": "complete"},
    "incomplete": {"ko": "불완전 ({pct:.1f}% 측정, 추정 포함)", "en": "incomplete ({pct:.1f} % measured, estimated)"},
    "unknown": {"ko": "완전성 알 수 없음", "en": "completeness unknown"},
    "no_bill": {"ko": "요금 없음 (이 달의 요금표 없음)", "en": "no bill (no tariff in force this month)"},
    "kg": {"ko": "kg CO₂e", "en": "kg CO2e"},
    "won": {"ko": "원", "en": "KRW"},
    "footer": {"ko": "요금은 config/tariffs.yaml의 출처·시행일이 있는 요금표로 계산한 추정치입니다.",
               "en": "Charges are estimates computed from the dated, sourced rates in config/tariffs.yaml."},
}

# Bill line codes → English labels (bill_lines.label is Korean, as on KEPCO's own statements).
_LINE_EN = {"base": "Base charge", "climate": "Climate-environment charge", "fuel": "Fuel-cost adjustment",
            "charge": "Electricity charge", "vat": "VAT", "fund_levy": "Power industry fund",
            "truncation": "Rounded down below 10 won", "energy_super": "Super-user rate", "levy": "Water-use levy",
            "energy": "Usage charge"}
# Line-code prefixes of the tiered charges (``<prefix>_t<tier>``: the progressive kind's energy_t1..3, the
# water_sewerage kind's water_t1.. and sewerage_t1..): names of charges, not of energy types.
_TIERED_EN = {"energy": "Energy", "water": "Water", "sewerage": "Sewerage"}


@dataclass(frozen=True)
class Line:
    code: str
    label: str         # Korean, as billed
    quantity: Decimal
    rate: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Projection:
    projected: Decimal
    total_krw: Decimal
    days_elapsed: float


@dataclass(frozen=True)
class EnergyPart:
    """One energy type of the statement."""

    key: str
    label_ko: str
    label_en: str
    unit: str
    decimals: int
    usage: Decimal | None            # billed usage of the month (None: no bill)
    tier: int | None
    total_krw: Decimal | None
    lines: tuple[Line, ...]
    history: tuple[tuple[date, Decimal | None], ...]   # the 13 months up to the statement's, oldest first
    peer_average: Decimal | None
    peers: int
    emission_factor: Decimal         # kg CO2e per unit
    projection: Projection | None
    completeness: float | None       # measured / expected seconds (None: unknown)

    @property
    def last_year(self) -> Decimal | None:
        return self.history[0][1] if len(self.history) == 13 else None

    @property
    def emission_kg(self) -> Decimal | None:
        return None if self.usage is None else self.usage * self.emission_factor


@dataclass(frozen=True)
class Statement:
    complex_name: str
    device_id: str
    building: int
    door: int
    unit_type: str
    month: date
    period: tuple[date, date]        # first and last day of the billing month (local)
    parts: tuple[EnergyPart, ...]
    completeness_known: bool

    @property
    def total_krw(self) -> Decimal:
        return sum((p.total_krw for p in self.parts if p.total_krw is not None), Decimal(0))


def krw(amount: Decimal) -> str:
    return f"{amount:,.0f}"


def quantity(value: Decimal, decimals: int) -> str:
    return f"{value:,.{decimals}f}"


def line_label(line: Line, lang: Lang) -> str:
    if lang == "ko":
        return line.label
    if line.code in _LINE_EN:
        tier = line.label.split("누진 ")[1][0] if "누진 " in line.label else ""
        return _LINE_EN[line.code] + (f" (tier {tier})" if tier else "")
    name, _, tier = line.code.partition("_t")
    return f"{_TIERED_EN.get(name, name)}, tier {tier}".strip()


def _t(key: str, lang: Lang, **kw: object) -> str:
    return html.escape(_TEXT[key][lang].format(**kw))


def history_svg(part: EnergyPart, lang: Lang) -> str:
    """13 bars, oldest first; this month and the same month last year dark, the others light."""
    w, h, top, bottom = 300, 96, 12, 16
    values = [float(v) if v is not None else 0.0 for _, v in part.history]
    peak = max([*values, 1e-9])
    bar = w / max(len(values), 1)
    out = [f'<svg data-figure="history-{part.key}" viewBox="0 0 {w} {h}" width="100%" role="img" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{html.escape(_TEXT["history"][lang])}</title>']
    for i, ((month, value), v) in enumerate(zip(part.history, values, strict=True)):
        bh = (h - top - bottom) * v / peak
        x = i * bar + bar * 0.15
        dark = i in (0, len(values) - 1) and len(values) == 13
        fill = "#1f4e79" if dark else "#9dbbd8"
        label = "" if value is None else quantity(value, 0)
        out.append(f'<rect data-month="{month:%Y-%m}" data-value="{label}" x="{x:.1f}" y="{h - bottom - bh:.1f}" '
                   f'width="{bar * 0.7:.1f}" height="{bh:.1f}" fill="{fill}"/>')
        if dark:
            out.append(f'<text x="{x + bar * 0.35:.1f}" y="{max(h - bottom - bh - 2, 9):.1f}" font-size="8" '
                       f'text-anchor="middle">{label}</text>')
        out.append(f'<text x="{x + bar * 0.35:.1f}" y="{h - 4}" font-size="7" text-anchor="middle">'
                   f'{month:%y.%m}</text>' if dark else
                   f'<text x="{x + bar * 0.35:.1f}" y="{h - 4}" font-size="7" text-anchor="middle">'
                   f'{month:%m}</text>')
    out.append("</svg>")
    return "".join(out)


def compare_svg(part: EnergyPart, lang: Lang) -> str:
    """Two horizontal bars: this flat's usage and the average of the flats of its unit type."""
    w, h = 300, 40
    pairs = [(_TEXT["this_flat"][lang], part.usage, "#1f4e79"), (_TEXT["average"][lang], part.peer_average, "#9dbbd8")]
    peak = max([float(v) for _, v, _ in pairs if v is not None] + [1e-9])
    out = [f'<svg data-figure="compare-{part.key}" viewBox="0 0 {w} {h}" width="100%" role="img" '
           f'xmlns="http://www.w3.org/2000/svg">']
    for i, (name, value, fill) in enumerate(pairs):
        y = 4 + i * 18
        length = 0.0 if value is None else 170 * float(value) / peak
        text = "-" if value is None else f"{quantity(value, 1)} {part.unit}"
        out.append(f'<text x="0" y="{y + 10}" font-size="9">{html.escape(name)}</text>'
                   f'<rect x="62" y="{y}" width="{length:.1f}" height="13" fill="{fill}"/>'
                   f'<text x="{66 + length:.1f}" y="{y + 10}" font-size="9">{html.escape(text)}</text>')
    out.append("</svg>")
    return "".join(out)


def _part_html(part: EnergyPart, st: Statement, lang: Lang) -> str:
    name = html.escape(part.label_ko if lang == "ko" else part.label_en)
    won = _t("won", lang)
    if part.total_krw is None:
        head = f'<span data-total="{part.key}">-</span> <small>{_t("no_bill", lang)}</small>'
        rows = ""
    else:
        tier = f' · {_t("tier", lang, tier=part.tier)}' if part.tier else ""
        head = f'<b data-total="{part.key}">{krw(part.total_krw)}</b> {won}{tier}'
        cells = []
        for line in part.lines:
            # subtotal and rounding lines have no quantity × rate to show
            plain = line.code in ("charge", "truncation") or (line.code == "base" and line.quantity == 1)
            q = "" if plain else quantity(line.quantity, 3)
            r = "" if plain else f"{line.rate.normalize():f}"
            if line.code in ("vat", "fund_levy"):   # a share of a charge: the charge in won, the rate in %
                q, r = krw(line.quantity), f"{(line.rate * 100).normalize():f} %"
            cells.append(f'<tr><td>{html.escape(line_label(line, lang))}</td><td class="n">{q}</td>'
                         f'<td class="n">{r}</td><td class="n" data-line="{part.key}-{line.code}">'
                         f'{krw(line.amount)}</td></tr>')
        rows = "".join(cells)
    if part.projection is not None:
        projection = _t("projected", lang, usage=quantity(part.projection.projected, 1), unit=part.unit,
                        bill=krw(part.projection.total_krw), days=part.projection.days_elapsed)
    else:
        projection = _t("no_projection", lang)
    if part.completeness is None:
        complete = _t("unknown", lang)
    elif part.completeness >= 0.9999:
        complete = _t("complete", lang)
    else:
        complete = _t("incomplete", lang, pct=100 * part.completeness)
    return f"""
<section class="part" data-energy="{part.key}">
  <h2>{name} <span class="unit">({html.escape(part.unit)})</span> <span class="total">{head}</span></h2>
  <div class="cols">
    <table class="lines"><caption>{_t("lines", lang)}</caption>{rows}</table>
    <div class="charts">
      <div class="cap">{_t("history", lang)}</div>{history_svg(part, lang)}
      <div class="cap">{_t("compare", lang, unit_type=st.unit_type, n=part.peers)}</div>{compare_svg(part, lang)}
    </div>
  </div>
  <p class="foot">{_t("projection", lang)}: <span data-projection="{part.key}">{projection}</span> ·
     {_t("completeness", lang)}: <span data-completeness="{part.key}">{complete}</span></p>
</section>"""


def _summary_rows(st: Statement, lang: Lang) -> str:
    rows = []
    for p in st.parts:
        usage = "-" if p.usage is None else quantity(p.usage, p.decimals)
        last = "-" if p.last_year is None else quantity(p.last_year, p.decimals)
        avg = "-" if p.peer_average is None else quantity(p.peer_average, 1)
        co2 = "-" if p.emission_kg is None else quantity(p.emission_kg, 1)
        total = "-" if p.total_krw is None else krw(p.total_krw)
        name = html.escape(p.label_ko if lang == "ko" else p.label_en)
        rows.append(f'<tr><td>{name}</td><td class="n" data-usage="{p.key}">{usage}</td>'
                    f'<td>{html.escape(p.unit)}</td><td class="n">{last}</td><td class="n">{avg}</td>'
                    f'<td class="n" data-emission="{p.key}">{co2}</td><td class="n">{total}</td></tr>')
    return "".join(rows)


_CSS = """
@page { size: A4; margin: 10mm; }
* { box-sizing: border-box; }
html, body { margin: 0; padding: 0; }
body { width: 190mm; font: 8.5pt/1.3 "Noto Sans CJK KR", "Noto Sans KR", "Malgun Gothic", "Apple SD Gothic Neo",
       sans-serif; color: #1b1b1b; }
header { display: flex; justify-content: space-between; align-items: flex-end; border-bottom: 2px solid #1f4e79;
         padding-bottom: 2mm; margin-bottom: 2mm; }
h1 { font-size: 14pt; margin: 0; color: #1f4e79; }
h2 { font-size: 10pt; margin: 0 0 1mm; border-bottom: 1px solid #c9d6e3; }
h2 .total { float: right; }
.due { text-align: right; font-size: 9pt; }
.due b { font-size: 15pt; color: #1f4e79; }
table { border-collapse: collapse; width: 100%; }
td, th { padding: 0.4mm 1.2mm; border-bottom: 1px solid #eef2f6; white-space: nowrap; }
th { background: #eef2f6; text-align: left; font-weight: 600; }
.n { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.5mm; }
.part { margin-top: 2.5mm; page-break-inside: avoid; }
.cols { display: flex; gap: 4mm; }
.lines { width: 52%; font-size: 7.5pt; align-self: flex-start; }
.charts { width: 48%; }
.cap { font-size: 7pt; color: #555; }
.foot { margin: 1mm 0 0; font-size: 7.5pt; }
.unit { font-weight: normal; color: #555; }
footer { margin-top: 3mm; font-size: 7pt; color: #666; }
"""


def render(st: Statement, lang: Lang = "ko") -> str:
    """The statement as one HTML document (UTF-8 text, no external reference)."""
    flat = _t("flat", lang, building=st.building, door=st.door)
    won = _t("won", lang)
    kg = _t("kg", lang)
    first, last = st.period
    parts = "".join(_part_html(p, st, lang) for p in st.parts)
    head = "".join(f"<th>{_t(k, lang)}</th>" for k in ("energy", "usage")) + "<th></th>" + "".join(
        f"<th>{_t(k, lang)}</th>" for k in ("last_year", "peers")) + f"<th>{_t('emission', lang)} ({kg})</th>" \
        + f"<th>{_t('bill', lang)} ({won})</th>"
    return f"""<!DOCTYPE html>
<html lang="{lang}" data-household="{html.escape(st.device_id)}" data-month="{st.month:%Y-%m}">
<head><meta charset="utf-8"><title>{_t("title", lang)} {st.month:%Y-%m} {flat}</title>
<style>{_CSS}</style></head>
<body>
<header>
  <div><h1>{_t("title", lang)}</h1>
    <div>{html.escape(st.complex_name)} · {flat} · {html.escape(st.unit_type)} · {html.escape(st.device_id)}</div>
    <div>{_t("period", lang)}: {first:%Y-%m-%d} – {last:%Y-%m-%d}</div></div>
  <div class="due">{_t("due", lang)}<br><b data-total="all">{krw(st.total_krw)}</b> {won}</div>
</header>
<table class="summary"><tr>{head}</tr>{_summary_rows(st, lang)}</table>
{parts}
<footer>{_t("footer", lang)}</footer>
</body></html>
"""
