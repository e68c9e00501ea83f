"""Parts split the buildings: every topic under the prefix is forwarded by exactly one part."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from apt_energy.bridge.partition import Part, Partition
from apt_energy.core.errors import ConfigError
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

BUILDINGS = tuple(range(1, 12))


def parts(n: int, buildings: tuple[int, ...] = BUILDINGS) -> list[Partition]:
    return [Partition("apt", "hanbit", buildings, Part(i, n)) for i in range(n)]


def forwarded_by(topic: str, layout: list[Partition]) -> list[int]:
    """The parts that both receive ``topic`` (a subscription matches) and keep it."""
    return [p.part.index for p in layout
            if any(mqtt.topic_matches_sub(f, topic) for f in p.subscriptions()) and p.keeps(topic)]


def test_one_bridge_subscribes_everything_under_the_prefix_and_keeps_it_all() -> None:
    (only,) = parts(1)
    assert only.subscriptions() == ["apt/#"]
    assert only.keeps("apt/hanbit/07/1203/status") and only.keeps("apt/elsewhere") and only.keeps("")


def test_part_0_catches_everything_and_the_others_subscribe_their_buildings_only() -> None:
    zero, one = parts(2)
    assert zero.subscriptions() == ["apt/#"]
    assert one.subscriptions() == [f"apt/hanbit/{b:02d}/#" for b in (2, 4, 6, 8, 10)]
    assert zero.own_buildings() == ["01", "03", "05", "07", "09", "11"]
    assert not zero.keeps("apt/hanbit/02/201/status") and one.keeps("apt/hanbit/02/201/status")
    assert zero.keeps("apt/hanbit/99/101/status") and zero.keeps("apt/other/02/101/status")


def test_stale_filters_of_other_layouts_are_unsubscribed_but_never_the_own_ones() -> None:
    for n in (1, 3):
        for i in range(n):
            p = Partition("apt", "hanbit", BUILDINGS, Part(i, n), former_groups=("apt-bridge",))
            stale = p.stale()
            assert "$share/apt-bridge/apt/#" in stale
            assert not set(stale) & set(p.subscriptions())
    shared = Partition("apt", "hanbit", BUILDINGS, shared_group="g")
    assert shared.subscriptions() == ["$share/g/apt/#"] and "apt/#" in shared.stale()


@pytest.mark.parametrize(("text", "ok"), [("0/1", True), ("1/2", True), (" 2 / 3 ", True), ("2/2", False),
                                          ("-1/2", False), ("1", False), ("a/b", False), ("0/0", False)])
def test_part_is_i_of_n_with_i_below_n(text: str, ok: bool) -> None:
    if ok:
        assert str(Part.parse(text)) == text.replace(" ", "")
    else:
        with pytest.raises(ConfigError, match="bridge part"):
            Part.parse(text)


def test_more_parts_than_buildings_or_parts_with_a_shared_subscription_are_refused() -> None:
    with pytest.raises(ConfigError, match="at most 11 parts"):
        Partition("apt", "hanbit", BUILDINGS, Part(0, 12))
    with pytest.raises(ConfigError, match="either"):
        Partition("apt", "hanbit", BUILDINGS, Part(0, 2), shared_group="g")


levels = st.sampled_from(["01", "02", "07", "11", "12", "1", "007", "hanbit", "other", "", "+", "apt", "99"]) | \
    st.text(max_size=8)


@settings(max_examples=500)
@given(n=st.integers(1, 11), tail=st.lists(levels, max_size=6), building_count=st.integers(1, 11))
def test_every_topic_under_the_prefix_is_forwarded_by_exactly_one_part(n: int, tail: list[str],
                                                                       building_count: int) -> None:
    if n > building_count:
        n = building_count
    topic = "/".join(["apt", *tail])
    assert len(forwarded_by(topic, parts(n, BUILDINGS[:building_count]))) == 1


@given(n=st.integers(1, 11), building=st.sampled_from(BUILDINGS), unit=st.integers(101, 2004))
def test_a_real_device_topic_is_forwarded_by_the_owner_of_its_building(n: int, building: int, unit: int) -> None:
    layout = parts(n)
    topic = f"apt/hanbit/{building:02d}/{unit}/electricity/reading"
    (owner,) = forwarded_by(topic, layout)
    assert f"{building:02d}" in layout[owner].own_buildings()
