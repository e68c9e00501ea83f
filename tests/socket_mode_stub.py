"""A local stand-in for Slack's Socket Mode: a WebSocket server (RFC 6455, stdlib only) that the real
slack_sdk ``SocketModeClient`` connects to.

:class:`tests.slack_stub.SlackStub` answers ``apps.connections.open`` (for an app-level ``xapp-`` token)
with this server's ``ws://`` URL. On connect the server says ``hello`` as Slack does; :meth:`press` then
sends an ``interactive`` envelope carrying a ``block_actions`` payload (a button press), and every
envelope's acknowledgement (``{"envelope_id": …}``) is recorded in :attr:`acks`. Pings are answered with
pongs, so the client's stale-connection check stays quiet. Written by hand because the protocol subset
is small and the project needs no WebSocket server package for it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import uuid
from typing import Any

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def _frame(opcode: int, payload: bytes) -> bytes:
    """A server frame: final, unmasked (RFC 6455 §5.1: servers never mask)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    b0, b1 = _read_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", _read_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", _read_exact(sock, 8))[0]
    mask = _read_exact(sock, 4) if b1 & 0x80 else b"\0\0\0\0"
    payload = bytes(c ^ mask[i % 4] for i, c in enumerate(_read_exact(sock, n)))
    return b0 & 0x0F, payload


class SocketModeStub:
    """Socket Mode's server side for one app; :attr:`acks` lists the envelope ids the client acknowledged."""

    def __init__(self, *, app_id: str = "A0APTENRGY", team_id: str = "T0APTENRGY") -> None:
        self.app_id, self.team_id = app_id, team_id
        self.acks: list[str] = []
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self._send_lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.5)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.getsockname()[1]}/link/?ticket={uuid.uuid4().hex}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in request.decode().split("\r\n")[1:] if ":" in line)}
            accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + _GUID).encode()).digest()).decode()
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            with self.lock:
                self.connections.append(conn)
            self._send(conn, {"type": "hello", "num_connections": 1, "connection_info": {"app_id": self.app_id},
                              "debug_info": {"host": "stub"}})
            self.connected.set()
            while not self._stop.is_set():
                opcode, payload = _read_frame(conn)
                if opcode == PING:
                    with self._send_lock:
                        conn.sendall(_frame(PONG, payload))
                elif opcode == CLOSE:
                    return
                elif opcode == TEXT:
                    message = json.loads(payload.decode())
                    if "envelope_id" in message:
                        with self.lock:
                            self.acks.append(str(message["envelope_id"]))
        except (OSError, ConnectionError, KeyError, ValueError):
            return
        finally:
            with self.lock:
                if conn in self.connections:
                    self.connections.remove(conn)
            conn.close()

    def _send(self, conn: socket.socket, message: dict[str, Any]) -> None:
        with self._send_lock:
            conn.sendall(_frame(TEXT, json.dumps(message).encode()))

    def envelope(self, *, user: str, action_id: str, alert_id: int, envelope_id: str | None = None,
                 app_id: str | None = None, team_id: str | None = None,
                 kind: str = "block_actions") -> dict[str, Any]:
        """An ``interactive`` envelope as Slack sends it for a button press (ids overridable to forge one)."""
        team = team_id or self.team_id
        return {"type": "interactive", "envelope_id": envelope_id or str(uuid.uuid4()),
                "accepts_response_payload": False,
                "payload": {"type": kind, "api_app_id": app_id or self.app_id, "team": {"id": team, "domain": "apt"},
                            "user": {"id": user, "team_id": team, "username": user.lower()},
                            "container": {"type": "message", "channel_id": "C0APTENRGY"},
                            "trigger_id": uuid.uuid4().hex,
                            "actions": [{"type": "button", "action_id": action_id, "value": str(alert_id),
                                         "block_id": f"apt_energy_alert_{alert_id}"}]}}

    def send(self, envelope: dict[str, Any]) -> str:
        """Send an envelope to the connected client; returns its envelope id."""
        assert self.connected.wait(10), "no Socket Mode client connected"
        with self.lock:
            conn = self.connections[-1]
        self._send(conn, envelope)
        return str(envelope["envelope_id"])

    def press(self, *, user: str, action_id: str, alert_id: int, **kw: Any) -> str:
        """A button press by ``user``; returns the envelope id."""
        return self.send(self.envelope(user=user, action_id=action_id, alert_id=alert_id, **kw))

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            for conn in self.connections:
                try:
                    conn.close()
                except OSError:
                    pass
        self.server.close()
