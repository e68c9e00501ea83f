from __future__ import annotations

import psycopg
import pytest
from apt_energy.config import Settings
from apt_energy.database import applied_versions, connect, migrate, seed
from apt_energy.database.connection import ServiceError
from apt_energy.database.migrate import discover

pytestmark = pytest.mark.integration

ORIGINAL_COLUMNS = {
    "buildings": [("id", "integer"), ("building_number", "integer")],
    "households": [("id", "integer"), ("building_id", "integer"), ("floor", "integer"), ("unit", "integer")],
    "energy_usage": [("id", "integer"), ("household_id", "integer"), ("energy_type", "character varying(10)"),
                     ("usage_date", "date"), ("amount", "double precision"), ("emission", "double precision")],
}


def test_original_tables_keep_their_columns_and_types(fresh_db: Settings) -> None:
    with connect(fresh_db) as conn:
        for table, columns in ORIGINAL_COLUMNS.items():
            rows = conn.execute(
                """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                   WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
                (table,)).fetchall()
            assert rows[: len(columns)] == columns, table
            # SERIAL primary keys, as in the original
            default = conn.execute("SELECT column_default FROM information_schema.columns "
                                   "WHERE table_name = %s AND column_name = 'id'", (table,)).fetchone()
            assert default is not None and str(default[0]).startswith("nextval(")


def test_migrating_twice_changes_nothing(fresh_db: Settings) -> None:
    with connect(fresh_db, role="owner") as conn:
        before = applied_versions(conn)
        schema = conn.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                              "WHERE table_schema = 'public' ORDER BY 1, 2").fetchall()
        assert migrate(conn) == []
        assert applied_versions(conn) == before == {m.version: m.checksum for m in discover()}
        assert conn.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = 'public' ORDER BY 1, 2").fetchall() == schema


def test_seed_is_idempotent_with_840_households_and_40_in_building_11(fresh_db: Settings) -> None:
    with connect(fresh_db, role="owner") as conn:
        ids = conn.execute("SELECT id, device_id FROM households ORDER BY id").fetchall()
        result = seed(conn, fresh_db)
        assert (result.buildings, result.households) == (11, 840)
        assert conn.execute("SELECT id, device_id FROM households ORDER BY id").fetchall() == ids
        per_building = dict(conn.execute(
            "SELECT b.building_number, count(*) FROM households h JOIN buildings b ON b.id = h.building_id "
            "GROUP BY 1").fetchall())
        assert per_building[11] == 40 and all(per_building[n] == 80 for n in range(1, 11))


def test_constraints_reject_bad_usage_rows(fresh_db: Settings) -> None:
    with connect(fresh_db) as conn:
        hid = conn.execute("SELECT min(id) FROM households").fetchone()[0]  # type: ignore[index]
        bad = [
            (hid, "전력", "2024-01-15", 1.0, 0.5),     # not the first of a month
            (hid, "전력", "2024-01-01", -1.0, 0.0),    # negative usage
            (hid, "gas", "2024-01-01", 1.0, 0.5),      # unknown energy type
            (999999, "전력", "2024-01-01", 1.0, 0.5),  # unknown household
        ]
        for row in bad:
            with pytest.raises(psycopg.errors.IntegrityError), conn.transaction():
                conn.execute("INSERT INTO energy_usage (household_id, energy_type, usage_date, amount, emission) "
                             "VALUES (%s, %s, %s, %s, %s)", row)
        conn.execute("INSERT INTO energy_usage (household_id, energy_type, usage_date, amount, emission) "
                     "VALUES (%s, '전력', '2024-01-01', 1, 0.4747)", (hid,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO energy_usage (household_id, energy_type, usage_date, amount, emission) "
                         "VALUES (%s, '전력', '2024-01-01', 2, 0.9)", (hid,))


def test_reader_role_can_select_but_not_write(fresh_db: Settings) -> None:
    with connect(fresh_db, role="reader") as conn:
        assert conn.execute("SELECT count(*) FROM households").fetchone() == (840,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM households")


def test_changed_migration_is_refused(fresh_db: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from apt_energy.database.migrate import MIGRATIONS_DIR

    for m in MIGRATIONS_DIR.glob("*.sql"):
        (tmp_path / m.name).write_text(m.read_text())
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after the fact\n")
    with connect(fresh_db, role="owner") as conn, pytest.raises(ServiceError, match="changed after it was applied"):
        migrate(conn, directory=tmp_path)
