"""PostgreSQL schema: versioned migrations, seeding the complex from config, connections."""

from __future__ import annotations

from apt_energy.database.connection import DatabaseLogin, connect, conninfo, roles
from apt_energy.database.migrate import MIGRATIONS_DIR, applied_versions, migrate
from apt_energy.database.seed import seed, seed_complex

__all__ = ["MIGRATIONS_DIR", "DatabaseLogin", "applied_versions", "connect", "conninfo", "migrate", "roles", "seed",
           "seed_complex"]
