from __future__ import annotations

import json

import pytest
from apt_energy.edge.commands import ClearAnomalies, GoOffline, Inject, InvalidInput, SetInterval, parse_command
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize("payload", [
    b"[" * 3000 + b"]" * 3000, b'{"a":' * 3000 + b"1" + b"}" * 3000, b'{"inject": "leak", "hours": NaN}',
    b'{"inject": "leak", "hours": 1e400}', b'{"inject": "leak", "hours": ' + b"9" * 400 + b"}",
    b'{"offline": {"hours": ' + b"9" * 400 + b"}}", b'{"inject": ["leak"]}', b'{"inject": "leak", "meter": {}}',
    b'{"inject": "leak", "inject": "overuse"}', b"x" * 100_000, b'{"set": "interval", "interval_s": 1e400}',
])
def test_hostile_commands_raise_invalid_input_only(payload: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse(payload)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    | st.sampled_from(["leak", "overuse", "water", "interval", "anomalies"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["inject", "meter", "hours", "flow", "factor", "clear", "set", "interval_s", "offline"]),
        inner, max_size=4), max_leaves=12).map(lambda v: json.dumps(v).encode())))
def test_any_payload_is_a_command_or_invalid_input(payload: bytes) -> None:
    try:
        parse(payload)
    except InvalidInput:
        pass


def test_replace_names_a_meter_and_optionally_its_serial_and_start_register() -> None:
    from apt_energy.edge.commands import ReplaceMeter, replace_command

    assert parse(b'{"replace": "water"}') == ReplaceMeter("water")
    assert parse(b'{"replace": "water", "serial": "W-9", "total": 0}') == ReplaceMeter("water", "W-9", 0.0)
    assert parse(replace_command("heating", serial="H-1", total=12.5)) == ReplaceMeter("heating", "H-1", 12.5)
    for bad in (b'{"replace": "gas"}', b'{"replace": 1}', b'{"replace": "water", "total": -1}',
                b'{"replace": "water", "serial": ""}', b'{"replace": "water", "serial": "\\u0000"}',
                b'{"replace": "water", "total": "lots"}'):
        with pytest.raises(InvalidInput):
            parse(bad)
