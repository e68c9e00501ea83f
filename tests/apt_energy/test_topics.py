from __future__ import annotations

import pytest
from apt_energy.config import Household

from apt_energy import topics

pytestmark = pytest.mark.unit


def test_topics_build_and_parse_back_to_the_device() -> None:
    h = Household("hanbit", 7, 12, 3)
    topic = topics.reading_topic("apt", h, "water")
    assert topic == "apt/hanbit/07/1203/water/reading"
    parsed = topics.parse("apt", topic)
    assert (parsed.kind, parsed.meter, parsed.device_id) == ("reading", "water", h.device_id)
    assert topics.parse("apt", "apt/hanbit/07/1203/status").kind == "status"


@pytest.mark.parametrize("topic", [
    "other/hanbit/07/1203/status", "apt/hanbit/07/1203", "apt/hanbit/07/1203/water/total",
    "apt/hanbit/seven/1203/status", "apt/hanbit/07/1203/reboot", "apt/hanbit/07/1203/water/reading/x",
])
def test_topics_outside_the_scheme_are_rejected(topic: str) -> None:
    with pytest.raises(topics.InvalidInput):
        topics.parse("apt", topic)
