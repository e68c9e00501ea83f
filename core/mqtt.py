"""Broker logins (one identity per gateway, TLS) and a paho client that reads its socket in chunks.

paho 2.x reads each packet's fixed header one byte per ``recv()`` call; at thousands of messages a
second those system calls dominate the bridge's and the fleet's CPU. This subclass fills a 64 KiB
buffer per ``recv()`` and serves paho's small reads from it. Two more per-message costs that profiles of
the fleet showed (py-spy, bench/bench_edge.py): paho writes every queued packet with its own ``send()``
(over TLS, its own record and system call), so queued packets are coalesced into one write; and paho
decodes every MQTT v5 PUBACK and QoS 1 PUBLISH with fresh ``ReasonCode``/``Properties`` objects, so the
common ones without properties (a PUBACK with at most a reason code, a PUBLISH whose property length is
0) take a short path with shared ones. And paho gives every QoS 1 publish its own ``threading.Condition``
(for ``wait_for_publish``), which was a quarter of the fleet's CPU: a QoS 1 publish without properties
gets a message whose info shares one condition per client. It overrides paho's private
``_sock_recv``/``_sock_close``/``_packet_write``/``_handle_pubackcomp``/``_handle_publish`` and
``publish`` (stable across 2.x); ``tests/core/test_mqtt.py`` pins the behaviour.

Whoever drives the network loop must call ``loop_read()`` again while :attr:`has_buffered` is true:
bytes already in the buffer no longer make the socket readable for select/epoll.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from apt_energy.config import Secret, Settings
from apt_energy.config.settings import MqttSettings
from apt_energy.core.errors import ConfigError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

# The paho-mqtt minor version whose private methods the overrides below were written and tested against
# (pyproject.toml pins it; tests/core/test_paho_version.py fails on any other).
PAHO_TESTED_MINOR = (2, 2)
CHUNK = 65536
COALESCE_BYTES = 65536     # at most this much of queued packets joined into one write

# Shared by every plain PUBACK: callbacks only read them.
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
_PUBACK_REASONS: dict[int, ReasonCode] = {0: _PUBACK_SUCCESS}
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
_NO_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


MqttRole = Literal["device", "bridge", "operator", "admin"]
_SECRET_ENV = {"device": "APT_ENERGY_MQTT_DEVICE_SECRET", "bridge": "APT_ENERGY_MQTT_BRIDGE_PASSWORD",
               "operator": "APT_ENERGY_MQTT_OPERATOR_PASSWORD", "admin": "APT_ENERGY_MQTT_ADMIN_PASSWORD"}


def device_password(secret: Secret, device_id: str) -> Secret:
    """A gateway's own broker password. Derived (HMAC-SHA256) so the simulator needs one secret for a whole
    fleet, while each gateway's password opens only its own identity: knowing one reveals no other."""
    digest = hmac.new(secret.reveal().encode(), device_id.encode(), hashlib.sha256).digest()
    return Secret(base64.urlsafe_b64encode(digest).decode().rstrip("="))


def credentials(mq: MqttSettings, role: MqttRole, secret: Secret, *, device_id: str = "") -> tuple[str, Secret]:
    """(username, password) of ``role`` from its one ``secret`` (a device's: the fleet's device secret, from
    which its own password is derived); a device logs in as its device id."""
    if not secret:
        raise missing_credentials(role)
    if role == "device":
        if not device_id:
            raise ConfigError("a device logs in with its device id")
        return device_id, device_password(secret, device_id)
    return {"bridge": mq.bridge_user, "operator": mq.operator_user, "admin": mq.admin_user}[role], secret


def missing_credentials(role: MqttRole) -> ConfigError:
    return ConfigError(f"no MQTT credentials for the {role}: set {_SECRET_ENV[role]} in the environment or "
                       ".env (`apt-energy stack up` generates it)")


def role_secret(settings: Settings, role: MqttRole) -> Secret:
    """The one secret ``role`` logs in with (a device's: the fleet's device secret)."""
    s = settings.secrets
    return {"device": s.mqtt_device_secret, "bridge": s.mqtt_bridge_password,
            "operator": s.mqtt_operator_password, "admin": s.mqtt_admin_password}[role]


@dataclass(frozen=True)
class MqttLogin:
    """One broker identity: its username, its password (masked in ``repr``) and the CA that verifies the
    broker (``None``: no TLS). What a component that connects keeps instead of the settings."""

    username: str
    password: Secret
    ca_file: Path | None

    @classmethod
    def from_settings(cls, settings: Settings, role: MqttRole, *, device_id: str = "") -> MqttLogin:
        """The door: ``role``'s identity from the settings tree (raises ConfigError without its secret)."""
        username, password = credentials(settings.mqtt, role, role_secret(settings, role), device_id=device_id)
        return cls(username, password, settings.mqtt_ca_file if settings.mqtt.tls else None)

    @property
    def credentials(self) -> tuple[str, Secret]:
        return self.username, self.password

    def apply(self, client: mqtt.Client) -> None:
        """Credentials and, with a CA, TLS with a verified broker: call before ``connect``."""
        client.username_pw_set(self.username, self.password.reveal() or None)
        if self.ca_file is not None:
            client.tls_set_context(tls_context(self.ca_file))


@dataclass(frozen=True)
class DeviceLogins:
    """Derives each gateway's own login from the fleet's device secret (see :func:`device_password`)."""

    secret: Secret
    ca_file: Path | None

    @classmethod
    def from_settings(cls, settings: Settings) -> DeviceLogins:
        return cls(settings.secrets.mqtt_device_secret, settings.mqtt_ca_file if settings.mqtt.tls else None)

    def for_device(self, device_id: str) -> MqttLogin | None:
        """``device_id``'s login; ``None`` without a device secret (the device then fails at its first
        connect, not at construction: the consumption model and its tests need no broker secrets)."""
        if not self.secret:
            return None
        if not device_id:
            raise ConfigError("a device logs in with its device id")
        return MqttLogin(device_id, device_password(self.secret, device_id), self.ca_file)


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """Verify the broker's certificate and host name against ``ca_file``. One context per CA file is shared
    by every client of the process (a fleet of 10,000 devices would otherwise hold 10,000 copies)."""
    return _tls_context(str(ca_file))


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot read the broker's CA {ca_file} ({exc}): run `apt-energy stack up`, or set "
                          "APT_ENERGY_MQTT_CA_FILE") from exc


class BufferedClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._published = threading.Condition()   # shared by the infos of lean publishes

    def publish(self, topic: str, payload: mqtt.PayloadType = None, qos: int = 0, retain: bool = False,
                properties: Properties | None = None) -> mqtt.MQTTMessageInfo:
        """paho's ``publish``; a QoS 1 publish of bytes without properties skips the per-message
        condition (what paho does for it is repeated here, in the same order and under the same lock)."""
        if qos != 1 or properties is not None or type(payload) is not bytes or self._max_queued_messages:
            return super().publish(topic, payload, qos, retain, properties)
        topic_bytes = topic.encode("utf-8")
        self._raise_for_invalid_topic(topic_bytes)
        if len(payload) > 268435455:
            raise ValueError("Payload too large.")
        mid = self._mid_generate()
        message = _LeanMessage(mid, topic_bytes, _LeanInfo(mid, self._published))
        message.timestamp = time.monotonic()
        message.payload = payload
        message.qos = 1
        message.retain = retain
        with self._out_message_mutex:
            if mid in self._out_messages:
                message.info.rc = mqtt.MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
                return message.info
            self._out_messages[mid] = message
            if self._max_inflight_messages == 0 or self._inflight_messages < self._max_inflight_messages:
                self._inflight_messages += 1
                message.state = mqtt.mqtt_ms_wait_for_puback
                rc = self._send_publish(mid, topic_bytes, payload, 1, retain, False, message.info, None)
                if rc == mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN:
                    self._inflight_messages -= 1
                    message.state = mqtt.mqtt_ms_publish
                message.info.rc = rc
            else:
                message.state = mqtt.mqtt_ms_queued
                message.info.rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
            return message.info

    def puback_many(self, mids: list[int]) -> None:
        """Queue the QoS 1 PUBACKs of ``mids`` (manual acknowledgement), in order, as one write: what
        ``ack(mid, 1)`` queues for each (a success PUBACK is its 2-byte mid), without paho's per-packet
        bookkeeping."""
        if not mids:
            return
        data = b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)
        self._packet_queue(mqtt.PUBACK, data, 0, 1)

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

    def _packet_write(self) -> mqtt.MQTTErrorCode:
        if len(self._out_packet) > 1:
            self._coalesce()
        return super()._packet_write()

    def _coalesce(self) -> None:
        """Join the queued packets paho does nothing with after writing them (all but QoS 0 PUBLISH, whose
        on_publish fires on write, and DISCONNECT, which closes the socket) into one, so one ``send()``
        writes them all. paho resumes a partial write from ``pos`` as for any packet."""
        out = self._out_packet
        parts: list[bytes] = []
        size = 0
        while out and size < COALESCE_BYTES and _plain(out[0]):
            head = out.popleft()
            part = bytes(head["packet"][head["pos"]:])
            parts.append(part)
            size += len(part)
        if not parts:
            return
        data = b"".join(parts)
        out.appendleft({"command": mqtt.PUBLISH | 2, "mid": 0, "qos": 1, "pos": 0, "to_process": len(data),
                        "packet": data, "info": None})

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> mqtt.MQTTErrorCode:
        packet = self._in_packet["packet"]
        # mid, then optionally a reason code, then optionally the property length: 0 is the short path
        if cmd != "PUBACK" or not 2 <= len(packet) <= 4 or (len(packet) == 4 and packet[3] != 0):
            return super()._handle_pubackcomp(cmd)     # properties, PUBCOMP or malformed: paho decides
        reason = _puback_reason(packet[2] if len(packet) > 2 else 0)
        if reason is None:
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, reason, _NO_PROPERTIES)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        if self._protocol != mqtt.MQTTv5 or (header & 0x06) != 0x02:    # v5 QoS 1 only
            return super()._handle_publish()
        at = 2 + ((packet[0] << 8) | packet[1])                          # after the topic
        if len(packet) < at + 3 or packet[at + 2] != 0:                  # properties (or malformed): paho
            return super()._handle_publish()
        mid = (packet[at] << 8) | packet[at + 1]
        message = _LeanMessage(mid, bytes(packet[2:at]), _LeanInfo(mid, self._published))
        message.dup = bool(header & 0x08)
        message.qos = 1
        message.retain = bool(header & 0x01)
        message.properties = _NO_PUBLISH_PROPERTIES   # shared: readers only
        message.payload = bytes(packet[at + 3:])
        message.timestamp = time.monotonic()
        self._handle_on_message(message)
        if self._manual_ack:
            return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._send_puback(message.mid)

    @property
    def has_buffered(self) -> bool:
        """Bytes already read that a select/epoll on the socket would not report: our buffer, and over
        TLS the records OpenSSL has decrypted but not yet handed out."""
        if self._rpos < len(self._rbuf):
            return True
        sock = self._sock
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


class _LeanInfo(mqtt.MQTTMessageInfo):
    """A publish's info whose condition is the client's shared one (waiters re-check their own flag)."""

    __slots__ = ()

    def __init__(self, mid: int, condition: threading.Condition) -> None:  # no super(): it makes a Condition
        self.mid = mid
        self._published = False
        self._condition = condition
        self.rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        self._iterpos = 0

    def _set_as_published(self) -> None:
        with self._condition:
            self._published = True
            self._condition.notify_all()   # shared: wake every waiter, each checks its own flag


class _LeanMessage(mqtt.MQTTMessage):
    __slots__ = ()

    def __init__(self, mid: int, topic: bytes, info: _LeanInfo) -> None:  # no super(): it makes an info
        self.timestamp = 0.0
        self.state = mqtt.mqtt_ms_invalid
        self.dup = False
        self.mid = mid
        self._topic = topic
        self.payload = b""
        self.qos = 0
        self.retain = False
        self.info = info
        self.properties = None


def _puback_reason(code: int) -> ReasonCode | None:
    """The shared ReasonCode of a PUBACK reason ``code``; None for a code paho itself should judge."""
    reason = _PUBACK_REASONS.get(code)
    if reason is None:
        try:
            reason = ReasonCode(PacketTypes.PUBACK, identifier=code)  # type: ignore[no-untyped-call]
        except KeyError:   # a code PUBACK does not have: paho's own path reports it
            return None
        _PUBACK_REASONS[code] = reason
    return reason


def _plain(packet: Any) -> bool:
    kind = packet["command"] & 0xF0
    return not (kind == mqtt.DISCONNECT or (kind == mqtt.PUBLISH and packet["qos"] == 0))
