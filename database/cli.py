"""``apt-energy db migrate|status``: schema migrations and seeding the complex from config."""

from __future__ import annotations

import argparse

from apt_energy.database.connection import connect, roles
from apt_energy.database.migrate import applied_versions, discover, migrate
from apt_energy.database.seed import seed

from apt_energy import config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "db", help="apply migrations and seed the complex; show schema status",
        description="Connects as the owner role (postgres.owner_user; password from "
                    "APT_ENERGY_DB_OWNER_PASSWORD or .env).")
    p.add_argument("action", choices=["migrate", "status"],
                   help="migrate: apply pending migrations and seed (safe to re-run); status: applied versions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = config.load()
    with connect(settings, role="owner") as conn:
        if args.action == "migrate":
            applied = migrate(conn, roles=roles(settings))
            result = seed(conn, settings)
            print(f"migrations applied now: {', '.join(f'{v:04d}' for v in applied) or 'none (up to date)'}")
            print(f"complex {settings.complex.id}: {result.buildings} buildings, {result.households} households")
            return 0
        done = applied_versions(conn) if conn.execute(
            "SELECT to_regclass('schema_migrations')").fetchone() != (None,) else {}
    for m in discover():
        print(f"{m.version:04d}_{m.name:<24} {'applied' if m.version in done else 'pending'}")
    return 0
