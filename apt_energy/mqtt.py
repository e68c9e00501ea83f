"""A paho client that reads its socket in chunks.

paho 2.x reads each packet's fixed header one byte per ``recv()`` call; at thousands of messages a
second those system calls dominate the bridge's and the fleet's CPU. This subclass fills a 64 KiB
buffer per ``recv()`` and serves paho's small reads from it. It overrides paho's private
``_sock_recv``/``_sock_close`` (stable across 2.x); ``tests/apt_energy/test_mqtt.py`` pins the behaviour.

Whoever drives the network loop must call ``loop_read()`` again while :attr:`has_buffered` is true:
bytes already in the buffer no longer make the socket readable for select/epoll.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt

from apt_energy.config import Settings

CHUNK = 65536


def login(client: mqtt.Client, settings: Settings, client_id: str) -> None:
    """Broker credentials: ``mqtt.username`` + ``APT_ENERGY_MQTT_PASSWORD`` when set (compose's broker
    requires them), else the client id as username (the native broker is anonymous on 127.0.0.1)."""
    password = settings.secrets.mqtt_password.reveal() or None
    client.username_pw_set(settings.mqtt.username or client_id, password)


class BufferedClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(CHUNK)   # raises BlockingIOError when nothing is there
            if not data:
                return b""                       # EOF: paho handles the lost connection
            self._rbuf, self._rpos = data, 0
        out = self._rbuf[self._rpos:self._rpos + bufsize]
        self._rpos += len(out)
        return out

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    @property
    def has_buffered(self) -> bool:
        return self._rpos < len(self._rbuf)
