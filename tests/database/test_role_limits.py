"""The roles' connection limits fit the server's slots (pure: no server)."""

from __future__ import annotations

import pytest
from apt_energy.core.errors import ServiceError
from apt_energy.database.roles import OWNER_RESERVE, SUPERUSER_RESERVED, Roles, fitted

pytestmark = pytest.mark.unit

ROLES = Roles(owner="o", writer="w", reader="r", reader_connection_limit=20, writer_connection_limit=150)


def test_the_native_stacks_limits_fit_as_configured() -> None:
    assert fitted(ROLES, 200) == ROLES


def test_a_smaller_server_lowers_the_writers_limit_and_keeps_the_owners_and_superusers_slots() -> None:
    roles = fitted(ROLES, 100)  # the postgres image's default (compose)
    assert roles.reader_connection_limit == 20
    assert roles.writer_connection_limit == 100 - 20 - OWNER_RESERVE - SUPERUSER_RESERVED


def test_a_reader_limit_that_leaves_the_writer_nothing_is_refused() -> None:
    with pytest.raises(ServiceError, match="reader_connection_limit"):
        fitted(ROLES, 20 + OWNER_RESERVE + SUPERUSER_RESERVED)
