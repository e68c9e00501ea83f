"""PostgreSQL schema: versioned migrations, seeding the complex from config, connections."""

from __future__ import annotations

from apt_energy.database.connection import connect, conninfo, roles
from apt_energy.database.migrate import MIGRATIONS_DIR, applied_versions, migrate
from apt_energy.database.seed import seed

__all__ = ["MIGRATIONS_DIR", "applied_versions", "connect", "conninfo", "migrate", "roles", "seed"]
