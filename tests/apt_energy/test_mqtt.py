"""BufferedClient serves paho's small reads from one large recv(), in order, and says when bytes wait."""

from __future__ import annotations

import socket

import paho.mqtt.client as mqtt
import pytest

from apt_energy.mqtt import BufferedClient

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
