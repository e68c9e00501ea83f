"""The MQTT side of the bridge: MQTT v5, persistent session, plain subscriptions, manual PUBACK.

* a fixed client id with ``clean_start=False`` and a session expiry makes the broker keep (and later
  redeliver) what arrives while this bridge is down, and restore the subscriptions after its own restart;
* the subscriptions come from :class:`~apt_energy.bridge.partition.Partition` (which buildings this bridge
  owns); see there why they are plain, not shared;
* Receive Maximum caps the unacknowledged messages the broker sends us: when Kafka is slow we stop
  acknowledging, and the backlog waits in the broker, not in our memory;
* every (re)connect subscribes again (a broker that lost our session would otherwise leave us deaf), with
  Retain Handling 1 so a restored subscription does not replay every retained message, and unsubscribes
  filters an earlier layout left in the session.
"""

from __future__ import annotations

import logging
import select
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from apt_energy.core.backoff import Backoff, BackoffPolicy
from apt_energy.core.mqtt import BufferedClient
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

logger = logging.getLogger(__name__)

#: The bridge is one client per part: it retries sooner and waits less than a device (the readings wait on it).
RECONNECT_BACKOFF = BackoffPolicy(base_s=0.2, cap_s=5.0, jitter=True)

OnMessage = Callable[[mqtt.MQTTMessage], None]


@dataclass(frozen=True)
class MqttOptions:
    """Where the broker is and how this client's session behaves."""

    host: str = "127.0.0.1"
    port: int = 1883
    keepalive_s: int = 30
    username: str = ""                 # the bridge's broker identity (apt_energy.core.mqtt.credentials)
    password: str = ""
    tls: ssl.SSLContext | None = None  # verifies the broker (apt_energy.core.mqtt.tls_context); None: plain MQTT
    session_expiry_s: int = 86400
    receive_maximum: int = 20000       # unacknowledged messages the broker may send us

    def __repr__(self) -> str:
        return (f"MqttOptions(host={self.host!r}, port={self.port}, username={self.username!r}, "
                f"password={'********' if self.password else ''!r})")


def raw_topic(message: mqtt.MQTTMessage) -> str | bytes:
    """The topic as text, or as the bytes received when they are not UTF-8 (paho's ``topic`` raises)."""
    try:
        return message.topic
    except UnicodeDecodeError:
        return bytes(message._topic)  # paho keeps the received bytes only here


class MqttSource:
    """One persistent MQTT v5 session that reads only while asked to and acknowledges on request."""

    def __init__(self, options: MqttOptions, *, client_id: str, subscriptions: Sequence[str],
                 unsubscribe: Sequence[str] = (), on_message: OnMessage, on_connected: Callable[[], None]) -> None:
        self.options = options
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.stale = list(unsubscribe)
        self.on_message_cb = on_message
        self.on_connected = on_connected
        self.connected = False
        self.subscribed = False
        self.closing = False
        self.ever_connected = False
        self.next_attempt = 0.0
        self.backoff = Backoff(policy=RECONNECT_BACKOFF)
        self.messages_read = 0
        self._subscribe_mid: int | None = None
        c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(options.username or client_id, options.password or None)
        if options.tls is not None:
            c.tls_set_context(options.tls)
        c.manual_ack_set(True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        # Without this hook paho writes every packet the moment it is queued: one TLS record and one
        # system call per PUBACK (a tenth of the bridge's CPU in py-spy). With it, PUBACKs wait for
        # poll()'s write, which sends all of them at once (BufferedClient coalesces queued packets).
        c.on_socket_register_write = _write_in_poll
        self.client = c

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.options.session_expiry_s
        props.ReceiveMaximum = max(1, min(self.options.receive_maximum, 65535))
        return props

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    properties: object) -> None:
        if reason.is_failure:
            logger.warning("mqtt connect refused reason=%s", reason)
            return
        # Every new connection starts a new epoch: the broker redelivers whatever we had not
        # acknowledged (or, without a session, forgets it), so nothing from before may be acked now.
        self.on_connected()
        self.connected = True
        self.backoff.reset()
        if self.stale:
            client.unsubscribe(self.stale)
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        _, self._subscribe_mid = client.subscribe([(t, options) for t in self.subscriptions])
        logger.info("mqtt connected client_id=%s session_present=%s subscriptions=%s", self.client_id,
                    flags.session_present, ",".join(self.subscriptions))

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reason_codes: list[ReasonCode],
                      properties: object) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            logger.error("mqtt subscription refused reason=%s", failed[0])
            return
        if mid == self._subscribe_mid:
            self.subscribed = True

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode,
                       properties: object) -> None:
        if self.connected and not self.closing:
            logger.warning("mqtt disconnected reason=%s; reconnecting", reason)
        self.connected = False
        self.subscribed = False
        self.next_attempt = time.monotonic() + self.backoff.next_delay()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.messages_read += 1
        self.on_message_cb(message)

    def ensure_connected(self) -> None:
        if self.client.socket() is not None or time.monotonic() < self.next_attempt:
            return
        o = self.options
        try:
            if not self.ever_connected:
                self.client.connect(o.host, o.port, keepalive=o.keepalive_s, clean_start=False,
                                    properties=self._connect_properties())
                self.ever_connected = True
            else:
                self.client.reconnect()
        except OSError as exc:
            logger.debug("mqtt connect failed error=%s", exc)
            self.next_attempt = time.monotonic() + self.backoff.next_delay()

    def poll(self, timeout: float, *, read: bool, max_messages: int = 2000) -> None:
        """Service the socket once: read up to ``max_messages`` (if ``read``), write, keepalive."""
        self.ensure_connected()
        sock = self.client.socket()
        if sock is None:
            time.sleep(min(timeout, 0.05))
            return
        want_write = self.client.want_write()
        buffered = read and self.client.has_buffered
        r, _, _ = select.select([sock] if read else [], [sock] if want_write else [], [], 0 if buffered else timeout)
        if r or buffered:
            for _ in range(max_messages):
                before = self.messages_read
                if self.client.loop_read() != mqtt.MQTT_ERR_SUCCESS or self.messages_read == before:
                    break
        if self.client.socket() is not None and self.client.want_write():
            self.client.loop_write()
        if self.client.socket() is not None:
            self.client.loop_misc()

    def ack(self, mid: int) -> None:
        """Queue the PUBACK of ``mid``; the next :meth:`poll` (or :meth:`close`) writes it."""
        if self.connected:
            self.client.ack(mid, 1)

    def ack_many(self, mids: list[int]) -> None:
        """Queue the PUBACKs of ``mids``, in this order, as one packet write."""
        if self.connected:
            self.client.puback_many(mids)

    def close(self) -> None:
        """Write what is queued (PUBACKs included) and leave the session."""
        self.closing = True
        if self.client.socket() is not None:
            self.client.disconnect()
            self.client.loop_write()


def _write_in_poll(client: mqtt.Client, userdata: object, sock: object) -> None:
    """Queued packets are written by :meth:`MqttSource.poll`, which selects for write while paho wants to."""


def end_session(options: MqttOptions, client_id: str, *, timeout_s: float = 10.0) -> bool:
    """Remove the broker's persistent session of ``client_id`` (a retired bridge part): connect with a clean
    start and a session expiry of 0, then disconnect. A session nobody resumes would otherwise keep queueing
    everything it subscribed to until it expires, and the broker would rewrite that queue at every save.
    True once the broker accepted the connection (the old session is gone then)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(options.username or client_id, options.password or None)
    if options.tls is not None:
        c.tls_set_context(options.tls)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    try:
        c.connect(options.host, options.port, keepalive=max(5, options.keepalive_s), clean_start=True,
                  properties=props)
    except OSError as exc:
        logger.warning("mqtt session not removed client_id=%s error=%s", client_id, exc)
        return False
    deadline = time.monotonic() + timeout_s
    while not c.is_connected() and time.monotonic() < deadline:
        c.loop(timeout=0.2)
    ok = c.is_connected()
    c.disconnect()
    c.loop(timeout=0.2)
    if ok:
        logger.info("mqtt session removed client_id=%s", client_id)
    else:
        logger.warning("mqtt session not removed client_id=%s (no CONNACK within %.0fs)", client_id, timeout_s)
    return ok
