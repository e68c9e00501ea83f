"""BufferedClient serves paho's small reads from one large recv(), in order, and says when bytes wait."""

from __future__ import annotations

import socket

import paho.mqtt.client as mqtt
import pytest
from apt_energy.core.mqtt import BufferedClient
from paho.mqtt.exception import MalformedPacket

pytestmark = pytest.mark.unit


class CountingSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.calls = sock, 0

    def recv(self, bufsize: int) -> bytes:
        self.calls += 1
        return self.sock.recv(bufsize)

    def close(self) -> None:
        self.sock.close()


def test_small_reads_come_from_one_recv_in_order_and_eof_passes_through() -> None:
    ours, theirs = socket.socketpair()
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    counting = CountingSocket(ours)
    client._sock = counting  # type: ignore[assignment]
    theirs.sendall(b"\x30\x05hello")
    out = [client._sock_recv(1), client._sock_recv(1), client._sock_recv(5)]
    assert out == [b"\x30", b"\x05", b"hello"] and counting.calls == 1
    assert not client.has_buffered
    theirs.sendall(b"ab")
    assert client._sock_recv(1) == b"a" and client.has_buffered  # 'b' waits: the socket no longer shows it
    assert client._sock_recv(10) == b"b"
    theirs.close()
    assert client._sock_recv(1) == b""
    client._sock_close()


def _queue(client: BufferedClient, command: int, data: bytes, qos: int) -> None:
    client._out_packet.append({"command": command, "mid": 1, "qos": qos, "pos": 0, "to_process": len(data),
                               "packet": data, "info": None})


def test_queued_packets_go_out_in_one_send_in_order_but_a_disconnect_stays_apart() -> None:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    _queue(client, mqtt.PUBLISH | 2, b"one", 1)
    _queue(client, mqtt.PUBACK, b"two", 0)
    _queue(client, mqtt.DISCONNECT, b"end", 0)
    client._coalesce()
    packets = list(client._out_packet)
    assert [p["packet"] for p in packets] == [b"onetwo", b"end"]
    assert packets[0]["qos"] == 1 and packets[1]["command"] == mqtt.DISCONNECT


def test_a_plain_puback_acknowledges_its_publish_with_a_success_reason() -> None:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    acked: list[tuple[int, bool]] = []
    client.on_publish = lambda c, u, mid, reason, props: acked.append((mid, reason.is_failure))
    info = client.publish("t/x", b"x", qos=1)   # not connected: queued for the session
    client._in_packet["packet"] = bytes([info.mid >> 8, info.mid & 0xFF])
    client._handle_pubackcomp("PUBACK")
    assert acked == [(info.mid, False)] and info.mid not in client._out_messages


def _publish_packet(topic: bytes, mid: int, properties: bytes, payload: bytes) -> bytes:
    return len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + properties + payload


@pytest.mark.parametrize("properties", [b"\x00", b"\x02\x01\x01"])   # none; Payload Format Indicator = 1
@pytest.mark.parametrize("manual", [True, False])
def test_a_qos1_publish_reaches_on_message_the_same_with_or_without_properties(properties: bytes,
                                                                               manual: bool) -> None:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    client.manual_ack_set(manual)
    got: list[mqtt.MQTTMessage] = []
    client.on_message = lambda c, u, m: got.append(m)
    client._in_packet["command"] = mqtt.PUBLISH | 0x02 | 0x08 | 0x01   # QoS 1, dup, retain
    client._in_packet["packet"] = _publish_packet(b"a/b", 513, properties, b'{"x":1}')
    client._handle_publish()
    (m,) = got
    assert (m.topic, m.mid, m.qos, m.dup, m.retain, m.payload) == ("a/b", 513, 1, True, True, b'{"x":1}')
    puback = [p["packet"] for p in client._out_packet]
    assert (puback == []) if manual else (puback[0][:4] == b"\x40\x02\x02\x01")


@pytest.mark.parametrize(("tail", "failure", "name"), [
    (b"", False, "Success"), (b"\x10", False, "No matching subscribers"),
    (b"\x10\x00", False, "No matching subscribers"), (b"\x87\x00", True, "Not authorized")])
def test_a_puback_with_a_reason_code_reports_that_code(tail: bytes, failure: bool, name: str) -> None:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    acked: list[tuple[bool, str]] = []
    client.on_publish = lambda c, u, mid, reason, props: acked.append((reason.is_failure, reason.getName()))
    info = client.publish("t/x", b"x", qos=1)
    client._in_packet["packet"] = bytes([info.mid >> 8, info.mid & 0xFF]) + tail
    client._handle_pubackcomp("PUBACK")
    assert acked == [(failure, name)]


def test_a_lean_publish_is_queued_like_paho_and_its_info_completes_on_puback() -> None:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    lean = client.publish("t/x", b"payload", qos=1)
    plain = client.publish("t/x", "text", qos=1)          # not bytes: paho's own path
    assert lean.mid != plain.mid and not lean._published     # not connected: is_published() would raise
    message = client._out_messages[lean.mid]
    assert (message.topic, message.payload, message.qos, message.retain) == ("t/x", b"payload", 1, False)
    client._in_packet["packet"] = bytes([lean.mid >> 8, lean.mid & 0xFF])
    client._handle_pubackcomp("PUBACK")
    assert lean._published and not plain._published and lean.mid not in client._out_messages
    with pytest.raises(ValueError):
        client.publish("t/#", b"x", qos=1)


def test_a_malformed_puback_is_left_to_paho_which_reports_it() -> None:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    client._in_packet["packet"] = b"\x01"
    with pytest.raises(MalformedPacket):
        client._handle_pubackcomp("PUBACK")


def test_many_pubacks_are_queued_as_paho_would_send_them_one_by_one() -> None:
    ours = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    for mid in (1, 300, 65535):
        paho._send_puback(mid)
    ours.puback_many([1, 300, 65535])
    ours.puback_many([])
    assert [p["packet"] for p in ours._out_packet] == [b"".join(p["packet"] for p in paho._out_packet)]
