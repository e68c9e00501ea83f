"""Claim leases on the outbox: two notifiers never hold one row; only expired leases are taken over."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from apt_energy.alerts import OutboxState, outbox
from apt_energy.config import Settings
from apt_energy.database import connect

from tests.alerts.conftest import insert_alerts, states

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection]:
    with connect(settings, autocommit=True) as c:
        yield c


def test_two_claims_never_share_a_row(settings: Settings, conn: psycopg.Connection) -> None:
    ids = insert_alerts(settings, 5)
    first = outbox.claim(conn, owner="a", limit=3, lease_s=60)
    second = outbox.claim(conn, owner="b", limit=3, lease_s=60)
    assert [n.id for n in first] == ids[:3] and [n.id for n in second] == ids[3:]
    assert first[0].door == "101" and first[0].kind == "raised"


def test_a_live_lease_is_not_taken_over(settings: Settings, conn: psycopg.Connection) -> None:
    insert_alerts(settings, 2)
    outbox.claim(conn, owner="a", limit=2, lease_s=60)
    assert outbox.take_expired(conn, owner="b", lease_s=60) == []


def test_an_expired_lease_is_taken_over_once_and_its_old_owner_can_no_longer_post_or_mark(
        settings: Settings, conn: psycopg.Connection) -> None:
    [nid] = insert_alerts(settings, 1)
    outbox.claim(conn, owner="a", limit=1, lease_s=0)
    assert [r.id for r in outbox.take_expired(conn, owner="b", lease_s=60)] == [nid]
    assert outbox.take_expired(conn, owner="c", lease_s=60) == []
    assert not outbox.renew(conn, [nid], owner="a", lease_s=60)
    assert outbox.mark_delivered(conn, [nid], owner="a", state=OutboxState.SENT, channel="C1", ts="1.0") == 0
    assert outbox.mark_delivered(conn, [nid], owner="b", state=OutboxState.SENT, channel="C1", ts="1.0") == 1
    assert states(settings) == [OutboxState.SENT]


def test_rows_sending_before_leases_existed_count_as_expired(settings: Settings, conn: psycopg.Connection) -> None:
    [nid] = insert_alerts(settings, 1, state=OutboxState.SENDING)
    [row] = outbox.take_expired(conn, owner="b", lease_s=60)
    assert row.id == nid and row.claimed_at is not None


def test_given_back_rows_are_claimable_again(settings: Settings, conn: psycopg.Connection) -> None:
    [nid] = insert_alerts(settings, 1)
    outbox.claim(conn, owner="a", limit=1, lease_s=60)
    assert outbox.give_back(conn, [nid], owner="a", error="rate limited") == 1
    assert [n.id for n in outbox.claim(conn, owner="b", limit=1, lease_s=60)] == [nid]
