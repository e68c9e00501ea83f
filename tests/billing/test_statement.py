"""Monthly statements rendered by a real browser: Debian's Chromium, headless, lays out every statement of
a small run; the page fits one A4 sheet (nothing off the page, one PDF page), every figure is there, and
the numbers on the page are the bills' numbers in PostgreSQL. Screenshots stay in .run/artifacts/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from apt_energy.billing import statement, statement_source, store
from apt_energy.billing.cli import contract_areas, statement_inputs, tariffs_for, write_statement
from apt_energy.config import PROJECT_ROOT, Settings
from apt_energy.database.connection import connect
from apt_energy.forecast.history import import_months

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MONTH = date(2025, 8, 1)
ARTIFACTS = PROJECT_ROOT / ".run" / "artifacts"
# A4 at CSS's 96 px per inch, less the statement's 10 mm page margins.
MM = 96 / 25.4
PAGE_W, PAGE_H = 190 * MM, 277 * MM
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# A test-only page that frames every statement at the A4 text width (one browser start for all of them)
# and records, per statement, how far any element reaches and the text of every figure a reader checks.
PROBE = """<!DOCTYPE html><html><body>%s<script>
window.addEventListener('load', () => {
  const out = {};
  for (const frame of document.querySelectorAll('iframe')) {
    const doc = frame.contentDocument;
    let right = 0, bottom = 0;
    for (const el of doc.body.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      right = Math.max(right, r.right); bottom = Math.max(bottom, r.bottom);
    }
    const text = {};
    for (const el of doc.querySelectorAll('[data-total],[data-usage],[data-line],[data-emission]')) {
      const k = ['total', 'usage', 'line', 'emission'].find(a => el.dataset[a] !== undefined);
      text[k + ':' + el.dataset[k]] = el.textContent.trim();
    }
    const figures = {};
    for (const svg of doc.querySelectorAll('svg[data-figure]')) {
      figures[svg.dataset.figure] = {bars: svg.querySelectorAll('rect').length,
                                     width: svg.getBoundingClientRect().width};
    }
    out[frame.dataset.page] = {right, bottom, text, figures, scrollW: doc.documentElement.scrollWidth};
  }
  document.body.setAttribute('data-measure', JSON.stringify(out));
});
</script></body></html>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; installed by stack/chromium.sh (as root) when missing."""
    found = shutil.which("chromium")
    if found:
        return found
    done = subprocess.run(["bash", str(PROJECT_ROOT / "stack" / "chromium.sh")], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        pytest.fail(f"no Chromium and could not install it: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class _Body(HTMLParser):
    measure: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.measure = dict(attrs).get("data-measure")


def measure(chromium: str, pages: list[Path], work: Path) -> dict[str, dict[str, object]]:
    frames = "".join(f'<iframe data-page="{p.name}" src="{p.name}" style="width:190mm;height:400mm;border:0"></iframe>'
                     for p in pages)
    probe = pages[0].parent / "probe.html"
    probe.write_text(PROBE % frames, encoding="utf-8")
    dom = browse(chromium, work / "profile-dom", "--allow-file-access-from-files", "--window-size=900,1200",
                 "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    parser = _Body()
    parser.feed(dom)
    assert parser.measure, "the pages' layout was not measured"
    return json.loads(parser.measure)  # type: ignore[no-any-return]


def pdf_pages(chromium: str, page: Path, work: Path) -> int:
    pdf = work / f"{page.stem}.pdf"
    browse(chromium, work / "profile-pdf", "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri())
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf.read_bytes()))


@pytest.fixture
def small_run(fresh_db: Settings) -> list[statement_source.HouseholdRow]:
    """Four flats of two unit types with 13 months of usage to August 2025 (one of them 1,050 kWh in
    August: the super-user band), billed, with a projection for August."""
    cx = fresh_db.complex.households()
    chosen = [cx[0], cx[1], cx[5], next(h for h in cx if h.building == 11)]
    months = [statement_source.months_back(MONTH, n) for n in range(12, -1, -1)]
    rng = np.random.default_rng(7)
    totals = np.stack([np.stack([[rng.uniform(180, 420), rng.uniform(50, 1400), rng.uniform(9, 24)]
                                 for _ in chosen]) for _ in months])
    totals[-1, 0, 0] = 1050.4
    with connect(fresh_db) as conn:
        import_months(conn, device_ids=[h.device_id for h in chosen], meters=["electricity", "heating", "water"],
                      months=months, totals=totals.round(3), decimals=[3, 3, 4], source="test")
        for h in chosen:
            conn.execute("""INSERT INTO usage_forecasts (level, series_id, energy_type, target_month, model, horizon,
                                                         point, lo80, hi80, lo95, hi95, issued_at)
                            VALUES ('household', %s, 'electricity', %s, 'ets', 1, 400, 0, 0, 0, 0, now())""",
                         (h.device_id, MONTH))
        conn.commit()
        rates = tariffs_for(fresh_db)
        store.compute(conn, rates, contract_areas=contract_areas(fresh_db))
        assert store.project(conn, rates, MONTH, tz=fresh_db.complex.tz) == 4
        return [statement_source.households(conn, h.device_id)[0] for h in chosen]


def test_every_statement_of_a_small_run_fits_one_a4_page_with_the_bills_numbers(
        fresh_db: Settings, small_run: list[statement_source.HouseholdRow], chromium: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with connect(fresh_db) as conn:
        inputs = statement_inputs(fresh_db)
        pages = [(h, lang, write_statement(tmp_path, statement_source.statement(conn, inputs, h, MONTH), lang))
                 for h in small_run for lang in ("ko", "en")]
        bills = {(d, k): (u, t) for d, k, u, t in conn.execute(
            """SELECT h.device_id, b.energy_type, b.usage, b.total_krw FROM bills b
               JOIN households h ON h.id = b.household_id WHERE b.usage_month = %s""", (MONTH,)).fetchall()}
        lines = {(d, f"{k}-{c}"): a for d, k, c, a in conn.execute(
            """SELECT h.device_id, b.energy_type, l.code, l.amount FROM bills b JOIN bill_lines l ON l.bill_id = b.id
               JOIN households h ON h.id = b.household_id WHERE b.usage_month = %s""", (MONTH,)).fetchall()}
    assert len(bills) == 12
    measured = measure(chromium, [p for _, _, p in pages], tmp_path)
    for household, _, page in pages:
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["'](?!#)|url\(|@import""", html), "an external reference"
        m = measured[page.name]
        assert m["right"] <= PAGE_W + 0.5 and m["scrollW"] <= round(PAGE_W) + 1, (page.name, m["right"])  # type: ignore[operator]
        assert m["bottom"] <= PAGE_H, (page.name, m["bottom"])  # type: ignore[operator]
        figures = m["figures"]
        text = m["text"]
        assert isinstance(figures, dict) and isinstance(text, dict)
        for energy in fresh_db.energy:
            assert figures[f"history-{energy}"]["bars"] == 13 and figures[f"history-{energy}"]["width"] > 100
            assert figures[f"compare-{energy}"]["bars"] == 2
            usage, total = bills[(household.device_id, energy)]
            assert text[f"total:{energy}"] == f"{total:,.0f}"
            assert text[f"usage:{energy}"] == f"{usage:,.{fresh_db.energy[energy].decimals}f}"
        shown = {k.removeprefix("line:"): v for k, v in text.items() if k.startswith("line:")}
        assert shown == {k: f"{a:,.0f}" for (d, k), a in lines.items() if d == household.device_id}
        total_all = sum(t for (d, _), (_, t) in bills.items() if d == household.device_id)
        assert text["total:all"] == f"{total_all:,.0f}"
    super_user = next(p for h, lang, p in pages if h.device_id == small_run[0].device_id and lang == "ko")
    assert "슈퍼유저요금" in super_user.read_text(encoding="utf-8")
    assert "완전성 알 수 없음" in super_user.read_text(encoding="utf-8")   # usage written directly: no metered interval
    # printed: the longest statements (the super-user flat's, both languages) on one PDF page each
    for _, _, page in pages[:2]:
        assert pdf_pages(chromium, page, tmp_path) == 1, page.name
        shot = ARTIFACTS / f"statement-{page.stem}.png"
        browse(chromium, tmp_path / "profile-shot", f"--window-size={round(210 * MM)},{round(297 * MM)}",
               f"--screenshot={shot}", page.as_uri())
        assert shot.stat().st_size > 10_000


def test_english_labels_every_bill_line_without_korean() -> None:
    lines = [statement.Line(c, label, Decimal(1), Decimal(1), Decimal(1)) for c, label in (
        ("base", "기본요금 (누진 3단계)"), ("energy_t2", "전력량요금 2단계"), ("energy_super", "슈퍼유저요금"),
        ("water_t1", "상수도 1단계"), ("sewerage_t3", "하수도 3단계"), ("levy", "물이용부담금"),
        ("energy", "사용요금"))]
    labels = [statement.line_label(line, "en") for line in lines]
    assert labels == ["Base charge (tier 3)", "Energy, tier 2", "Super-user rate", "Water, tier 1", "Sewerage, tier 3",
                      "Water-use levy", "Usage charge"]
