from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from apt_energy.contract import InvalidInput, Reading, exact, usage_month

pytestmark = pytest.mark.unit

SEOUL = ZoneInfo("Asia/Seoul")


def reading(**over: object) -> Reading:
    base = dict(device_id="hanbit-01-101", meter="water", seq=7, ts=datetime(2024, 1, 1, 3, tzinfo=UTC),
                interval_s=3600, value=0.0123, total=12.5, unit="m³")
    base.update(over)
    return Reading(**base)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field_and_numbers_stay_json_numbers() -> None:
    r = reading()
    data = json.loads(r.to_json())
    assert isinstance(data["value"], float) and isinstance(data["seq"], int)
    assert data["ts"] == "2024-01-01T03:00:00Z"
    assert Reading.from_json(r.to_json()) == r


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"device_id": "d"}', "missing field meter"),
    (json.dumps({**reading().to_dict(), "seq": "7"}).encode(), "seq is not an integer"),
    (json.dumps({**reading().to_dict(), "value": -1}).encode(), "value is negative"),
    (json.dumps({**reading().to_dict(), "ts": "yesterday"}).encode(), "ts is not ISO-8601"),
    (json.dumps({**reading().to_dict(), "ts": "2024-01-01T00:00:00"}).encode(), "ts has no time zone"),
    (b'{"device_id":"d","meter":"water","seq":1,"ts":"2024-01-01T00:00:00Z","interval_s":60,'
     b'"value":NaN,"total":1,"unit":"m"}', "value is not finite"),
])
def test_bad_payloads_raise_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        Reading.from_json(payload)


def test_a_reading_ending_at_local_midnight_on_the_first_belongs_to_the_month_before() -> None:
    end = datetime(2024, 2, 1, tzinfo=SEOUL).astimezone(UTC)  # 2024-01-31T15:00Z
    assert usage_month(end, SEOUL).isoformat() == "2024-01-01"
    assert usage_month(end + timedelta(hours=1), SEOUL).isoformat() == "2024-02-01"
    # 16:00 UTC on 31 Jan is already February in Seoul
    assert usage_month(datetime(2024, 1, 31, 16, tzinfo=UTC), SEOUL).isoformat() == "2024-02-01"


def test_exact_is_the_decimal_json_wrote() -> None:
    assert exact(0.1) + exact(0.2) == Decimal("0.3")
    assert exact(round(0.12345, 4)) == Decimal("0.1235") or exact(round(0.12345, 4)) == Decimal("0.1234")
