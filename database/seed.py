"""Seed the complex (buildings, households), energy types and emission factors from config. Idempotent."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from apt_energy.config import ComplexSettings, EnergyType, Settings

logger = logging.getLogger(__name__)

# The configured factor is the one in force from this date until a newer row says otherwise.
DEFAULT_FACTOR_FROM = "2000-01-01"


@dataclass(frozen=True)
class SeedResult:
    buildings: int
    households: int


def seed(conn: psycopg.Connection, settings: Settings) -> SeedResult:
    """Insert what is missing; existing rows (and their ids) are left as they are."""
    return seed_complex(conn, settings.complex, settings.energy)


def seed_complex(conn: psycopg.Connection, cx: ComplexSettings, energy_types: Mapping[str, EnergyType]) -> SeedResult:
    """:func:`seed` from the two sections it reads: the complex and the energy types."""
    with conn.transaction():
        for key, energy in energy_types.items():
            conn.execute(
                """INSERT INTO energy_types (key, label_ko, label_en, unit) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (key) DO UPDATE SET label_en = EXCLUDED.label_en, unit = EXCLUDED.unit""",
                (key, energy.label_ko, energy.label_en, energy.unit))
            factor = energy.emission_factor
            conn.execute(
                """INSERT INTO emission_factors (energy_type, valid_from, factor, unit, source)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT (energy_type, valid_from) DO NOTHING""",
                (key, DEFAULT_FACTOR_FROM, factor.value, factor.unit, factor.source.strip()))
        # The complex's zone lets SQL turn local months into instants (view month_completeness).
        conn.execute(
            """INSERT INTO complexes (complex_id, timezone) VALUES (%s, %s)
               ON CONFLICT (complex_id) DO UPDATE SET timezone = EXCLUDED.timezone""", (cx.id, cx.timezone))
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO buildings (building_number, complex_id, floors, units_per_floor)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (complex_id, building_number) DO NOTHING""",
                [(n, cx.id, g.floors, g.units_per_floor) for g in cx.buildings for n in g.numbers])
            ids: dict[int, int] = dict(conn.execute("SELECT building_number, id FROM buildings WHERE complex_id = %s",
                                    (cx.id,)).fetchall())
            cur.executemany(
                """INSERT INTO households (building_id, floor, unit, device_id) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (device_id) DO NOTHING""",
                [(ids[h.building], h.floor, h.unit, h.device_id) for h in cx.households()])
        counts = conn.execute(
            """SELECT count(DISTINCT b.id), count(h.id) FROM buildings b LEFT JOIN households h
               ON h.building_id = b.id WHERE b.complex_id = %s""", (cx.id,)).fetchone()
    assert counts is not None
    result = SeedResult(int(counts[0]), int(counts[1]))
    logger.info("seeded complex=%s buildings=%d households=%d", cx.id, result.buildings, result.households)
    return result
