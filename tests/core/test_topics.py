from __future__ import annotations

import pytest
from apt_energy.config import Household
from apt_energy.core import topics

pytestmark = pytest.mark.unit


def test_topics_build_and_parse_back_to_the_device() -> None:
    h = Household("hanbit", 7, 12, 3)
    topic = topics.reading_topic("apt", h, "water")
    assert topic == "apt/hanbit/07/1203/water/reading"
    parsed = topics.parse("apt", topic)
    assert (parsed.kind, parsed.meter, parsed.device_id) == ("reading", "water", h.device_id)
    assert topics.parse("apt", "apt/hanbit/07/1203/status").kind == "status"
    assert topics.parse("apt", topic.encode()) == parsed
    assert topics.parse("a/b", "a/b/hanbit/101/101/cmd").device_id == "hanbit-101-101"


@pytest.mark.parametrize("topic", [
    "other/hanbit/07/1203/status", "apt/hanbit/07/1203", "apt/hanbit/07/1203/water/total",
    "apt/hanbit/seven/1203/status", "apt/hanbit/07/1203/reboot", "apt/hanbit/07/1203/water/reading/x",
    "apt/hanbit/" + "9" * 5000 + "/1203/status",           # int() would refuse 5,000 digits
    "apt/hanbit/7/1203/status", "apt/hanbit/007/1203/status",  # not canonical: same device, other topic
    "apt/hanbit/00/1203/status", "apt/hanbit/07/1200/status", "apt/hanbit/07/0103/status",
    "apt/hanbit/٠٧/1203/status",                            # Arabic-Indic digits pass str.isdigit
    "apt/hanbit/07/1203/status\n", "apt/+/07/1203/status", "apt/#", "apt/hanbit/07/1203/+/reading",
    "apt//07/1203/status", "apt/hanbit//1203/status", "apt/hanbit/07/1203/", "", "apt/",
    "apt/Hanbit/07/1203/status", "apt/hanbit/07/1203/Water/reading", "apt/hanbit/07/1203/\x00/reading",
    b"apt/hanbit/07/\xff/status", b"\xc3(", "apt/" + "x/" * 10_000,
])
def test_topics_outside_the_scheme_are_rejected_with_a_reason(topic: str | bytes) -> None:
    with pytest.raises(topics.InvalidInput) as info:
        topics.parse("apt", topic)
    assert str(info.value)
