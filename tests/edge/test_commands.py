from __future__ import annotations

import pytest
from apt_energy.edge.commands import ClearAnomalies, GoOffline, Inject, InvalidInput, SetInterval, parse_command

pytestmark = pytest.mark.unit

METERS = ("electricity", "heating", "water")


def parse(payload: bytes):  # type: ignore[no-untyped-def]
    return parse_command(payload, meters=METERS, base_interval_s=3600, default_leak_flow=0.012)


def test_valid_commands() -> None:
    assert parse(b'{"inject": "leak", "meter": "water", "hours": 48}') == Inject("leak", "water", 48, flow=0.012)
    assert parse(b'{"inject": "overuse", "meter": "electricity", "factor": 3, "hours": 5}') == Inject(
        "overuse", "electricity", 5, factor=3)
    assert parse(b'{"clear": "anomalies"}') == ClearAnomalies()
    assert parse(b'{"set": "interval", "interval_s": 7200}') == SetInterval(7200)
    assert parse(b'{"offline": {"hours": 2}}') == GoOffline(2)


@pytest.mark.parametrize("payload", [
    b"", b"leak!", b"[]", b'{"inject": "fire"}', b'{"inject": "leak", "meter": "gas"}',
    b'{"inject": "leak", "hours": -1}', b'{"inject": "leak", "hours": "many"}', b'{"set": "interval"}',
    b'{"set": "interval", "interval_s": 5400}', b'{"offline": {"hours": 0}}', b'{"reboot": true}',
    b'\xff\xfe',
])
def test_malformed_commands_raise_command_error(payload: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse(payload)
