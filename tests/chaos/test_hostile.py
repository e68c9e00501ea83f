"""The hostile corpus itself: every item is something a real client can put on the broker."""

from __future__ import annotations

import json

import pytest
from apt_energy.config import load

from tests.chaos.hostile import corpus

pytestmark = pytest.mark.unit


def test_the_corpus_is_publishable_and_covers_each_kind_of_hostile_input() -> None:
    from datetime import UTC, datetime

    household = next(iter(load().complex.households()))
    items = corpus("apt", household, datetime(2024, 3, 1, tzinfo=UTC))
    names = {i.name for i in items}
    assert {"huge topic level", "3,000-deep JSON", ">1 MB payload", "non-UTF-8 payload", "NaN value",
            "NUL in fields", "value >= 1e14", "overlong device id", "retained junk on status", "wildcards in ids",
            "duplicate keys"} <= names
    for item in items:
        # what paho and the MQTT spec allow a client to publish: no wildcards or NUL in the topic, < 64 KiB
        assert not {"+", "#", "\0"} & set(item.topic) and len(item.topic.encode()) < 65_536, item.name
    by_name = {i.name: i.payload for i in items}
    assert len(by_name[">1 MB payload"]) > 1_000_000
    assert by_name["3,000-deep JSON"].count(b"[") == 3000
    with pytest.raises(UnicodeDecodeError):
        by_name["non-UTF-8 payload"].decode()
    assert json.loads(by_name["value >= 1e14"])["value"] >= 1e14
