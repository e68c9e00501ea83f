"""The MQTT side of the bridge: MQTT v5, shared subscription, persistent session, manual PUBACK.

* ``$share/<group>/...`` lets N bridges split the devices' traffic;
* a fixed client id with ``clean_start=False`` and a session expiry makes the broker keep (and later
  redeliver) what arrives while this bridge is down;
* Receive Maximum caps the unacknowledged messages the broker sends us: when Kafka is slow we stop
  acknowledging, and the backlog waits in the broker, not in our memory;
* every (re)connect subscribes again (a broker that lost our session would otherwise leave us deaf).

Mosquitto 2.0.11 (Debian 12) restores persistent sessions and their queued messages after a restart,
but not *shared* subscriptions: what devices publish between the broker's restart and our
resubscribe has no subscriber and is discarded. A single bridge can set
``bridge.shared_subscription: false`` (a plain subscription, restored with the session) and lose
nothing across broker restarts; several bridges need the shared one and accept that window.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from apt_energy.config import Settings
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from apt_energy.backoff import Backoff
from apt_energy.mqtt import BufferedClient, login

logger = logging.getLogger(__name__)

OnMessage = Callable[[mqtt.MQTTMessage], None]


class MqttSource:
    def __init__(self, settings: Settings, *, client_id: str, on_message: OnMessage,
                 on_connected: Callable[[], None]) -> None:
        self.settings = settings
        self.client_id = client_id
        self.on_message_cb = on_message
        self.on_connected = on_connected
        self.connected = False
        self.subscribed = False
        self.closing = False
        self.ever_connected = False
        self.next_attempt = 0.0
        self.backoff = Backoff(base_s=0.2, cap_s=5.0)
        self.messages_read = 0
        c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        login(c, self.settings, "bridge")
        c.manual_ack_set(True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c

    @property
    def subscriptions(self) -> list[str]:
        # Everything under the prefix, not just the well-formed topics: a device publishing to a wrong
        # topic then lands in the dead-letter topic instead of vanishing unseen in the broker.
        everything = f"{self.settings.mqtt.topic_prefix}/#"
        if not self.settings.bridge.shared_subscription:
            return [everything]
        return [f"$share/{self.settings.bridge.group}/{everything}"]

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.bridge.session_expiry_s
        props.ReceiveMaximum = min(self.settings.bridge.max_in_flight, 65535)
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
        options = SubscribeOptions(qos=1)
        client.subscribe([(t, options) for t in self.subscriptions])
        logger.info("mqtt connected client_id=%s session_present=%s subscribed=%d", self.client_id,
                    flags.session_present, len(self.subscriptions))

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reason_codes: list[ReasonCode],
                      properties: object) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            logger.error("mqtt subscription refused reason=%s", failed[0])
            return
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
        mq = self.settings.mqtt
        try:
            if not self.ever_connected:
                self.client.connect(mq.host, mq.port, keepalive=mq.keepalive_s, clean_start=False,
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
        if self.connected:
            self.client.ack(mid, 1)

    def close(self) -> None:
        self.closing = True
        if self.client.socket() is not None:
            self.client.disconnect()
            self.client.loop_write()
