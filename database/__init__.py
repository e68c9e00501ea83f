"""PostgreSQL schema: versioned migrations, seeding the complex from config, connections."""

from __future__ import annotations

from database.connection import DatabaseError, connect, conninfo
from database.migrate import MIGRATIONS_DIR, applied_versions, migrate
from database.seed import seed

__all__ = ["MIGRATIONS_DIR", "DatabaseError", "applied_versions", "connect", "conninfo", "migrate", "seed"]
