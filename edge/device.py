"""One simulated household gateway (wallpad): its meters' registers, faults, outgoing buffer, MQTT link.

The device owns a paho client but never runs a network loop: :mod:`edge.fleet` drives thousands of
them from one selector. Readings wait in a bounded buffer (oldest dropped first, counted) and are
handed to paho only while connected and under the in-flight window, so a broker outage costs memory
up to the bound and nothing else; on reconnect the buffer drains in order.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import paho.mqtt.client as mqtt
from apt_energy.config import Household, Settings
from apt_energy.core import topics
from apt_energy.core.backoff import Backoff
from apt_energy.core.contract import DeviceMeta, DeviceStatus, MeterInfo, Reading, format_ts, parse_ts
from apt_energy.core.mqtt import BufferedClient, MqttLogin, missing_credentials
from apt_energy.edge.commands import (
    ClearAnomalies,
    GoOffline,
    Inject,
    InvalidInput,
    ReplaceMeter,
    SetInterval,
    parse_command,
)
from apt_energy.edge.state import Register, SavedDevice
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

logger = logging.getLogger(__name__)


@dataclass
class DeviceCounters:
    generated: int = 0
    acked: int = 0
    dropped: int = 0
    commands: int = 0
    bad_commands: int = 0
    retained_commands: int = 0
    connects: int = 0


@dataclass(frozen=True)
class DeviceOptions:
    """What every gateway of a fleet shares (one object for the whole fleet): its meters with their units and
    decimals, the topic prefix, the firmware it reports and a leak's default flow. No secret: each device's
    own login is given to it apart (:class:`apt_energy.core.mqtt.MqttLogin`)."""

    meters: tuple[str, ...]
    units: dict[str, str]
    decimals: dict[str, int]
    topic_prefix: str
    firmware: str
    leak_flow_m3_per_hour: float

    @classmethod
    def from_settings(cls, settings: Settings) -> DeviceOptions:
        energy = settings.energy
        return cls(meters=tuple(energy), units={m: e.unit for m, e in energy.items()},
                   decimals={m: e.decimals for m, e in energy.items()}, topic_prefix=settings.mqtt.topic_prefix,
                   firmware=settings.simulation.firmware,
                   leak_flow_m3_per_hour=settings.simulation.anomalies.leak_flow_m3_per_hour)


@dataclass
class _Active:
    inject: Inject
    until: datetime


class Device:
    def __init__(self, household: Household, options: DeviceOptions, *, base_interval_s: int, buffer_limit: int,
                 sim_clock: Callable[[], datetime], login: MqttLogin | None = None,
                 registers: dict[str, Register] | None = None,
                 life: int = 0, on_ack: Callable[[Reading], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.household = household
        self.device_id = household.device_id
        self.options = options
        # Its own broker identity only (None: no device secret configured; the first connect says so).
        self.login = login
        self.meters = options.meters
        self.units = options.units
        self.scale = {m: 10 ** options.decimals[m] for m in self.meters}
        self.base = topics.device_base(options.topic_prefix, household)
        self.reading_topics = {m: f"{self.base}/{m}/reading" for m in self.meters}
        self.base_interval_s = base_interval_s
        self.interval_s = base_interval_s
        self.registers = registers or {m: Register() for m in self.meters}
        # the generation of this seq state (see apt_energy.core.contract): a new one restarts seq at 0. Each
        # meter has its own from then on (a replaced meter starts a new one); the device's is the default.
        self.life = life
        for reg in self.registers.values():
            if reg.life is None:
                reg.life = life
        self.at: datetime | None = None     # end of the last interval generated (simulated time)
        self.made: list[tuple[Reading, int]] = []   # the last tick's readings with their registers in units
        self.on_command: Callable[[], None] | None = None   # after a command changed state (a checkpoint)
        self.rng = rng or random.Random(self.device_id)
        self.buffer: deque[Reading] = deque()
        self.buffer_limit = buffer_limit
        self.inflight: dict[int, Reading] = {}
        self.counters = DeviceCounters()
        self.on_ack = on_ack
        self.sim_clock = sim_clock  # commands are timed in simulated hours
        self.connected = False
        self.ever_connected = False
        self.offline_until: datetime | None = None
        self.next_connect_at = 0.0
        self.backoff = Backoff(rng=self.rng)
        self._active: list[_Active] = []
        self._accum = np.zeros(len(self.meters))
        self._accum_ticks = 0
        self.client = self._make_client()

    # ------------------------------------------------------------------------------- MQTT link

    def log_in(self) -> None:
        """Its own broker identity and TLS, set just before the first connect (not at construction: the
        consumption model and its tests need no broker secrets or CA)."""
        if self.login is None:
            raise missing_credentials("device")
        self.login.apply(self.client)

    def _make_client(self) -> BufferedClient:
        client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(0)     # our own window bounds it (see pump)
        offline = DeviceStatus(self.device_id, "offline", _utcnow())
        client.will_set(f"{self.base}/status", offline.to_json(), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600  # commands sent while briefly offline still arrive
        return props

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode,
                    properties: object) -> None:
        if reason.is_failure:
            logger.warning("connect refused device=%s reason=%s", self.device_id, reason)
            return
        self.connected = True
        self.backoff.reset()
        self.counters.connects += 1
        self.publish_meta()
        client.publish(f"{self.base}/status", DeviceStatus(self.device_id, "online", _utcnow()).to_json(),
                       qos=1, retain=True)
        client.subscribe(f"{self.base}/cmd", qos=1)

    def meta(self) -> DeviceMeta:
        """What the device announces (retained): who it is, and which physical meter measures each meter."""
        meters = tuple(MeterInfo(m, self.units[m], life=self.registers[m].life, serial=self.registers[m].serial,
                                 since=self.registers[m].since) for m in self.meters)
        return DeviceMeta(self.device_id, self.household.complex_id, self.household.building, self.household.floor,
                          self.household.unit, meters, self.options.firmware, self.interval_s)

    def publish_meta(self) -> None:
        self.client.publish(f"{self.base}/meta", self.meta().to_json(), qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode,
                       properties: object) -> None:
        self.connected = False

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: ReasonCode,
                    properties: object) -> None:
        reading = self.inflight.pop(mid, None)
        if reading is None:
            return  # meta/status
        self.counters.acked += 1
        if self.on_ack:
            self.on_ack(reading)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            # A retained message is state left on the topic, delivered again at every subscribe; a command
            # is an event, executed once when it is sent.
            self.counters.retained_commands += 1
            if self.counters.retained_commands == 1:
                logger.warning("ignored retained command device=%s topic=%s payload=%.80r", self.device_id,
                               message.topic, bytes(message.payload))
            return
        self.handle_command(bytes(message.payload), self.sim_clock())

    def pump(self, window: int) -> int:
        """Hand buffered readings to paho, oldest first, up to ``window`` unacknowledged. Returns how many."""
        sent = 0
        while self.connected and self.buffer and len(self.inflight) < window:
            reading = self.buffer[0]
            info = self.client.publish(self.reading_topics[reading.meter], reading.to_json(), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # lost the connection just now; keep it buffered
            self.buffer.popleft()
            self.inflight[info.mid] = reading
            sent += 1
        return sent

    def go_offline(self, until: datetime) -> None:
        """Drop the connection as a network outage would: the broker publishes our Last Will."""
        self.offline_until = until
        if self.connected:
            self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))

    def shutdown_status(self) -> None:
        """Clean shutdown: say offline ourselves (retained), then disconnect without the will."""
        if self.connected:
            self.client.publish(f"{self.base}/status", DeviceStatus(self.device_id, "offline", _utcnow()).to_json(),
                                qos=1, retain=True)

    # -------------------------------------------------------------------------------- readings

    def tick(self, end: datetime, values: np.ndarray) -> tuple[int, int]:
        """Add one fleet interval's consumption; once the device's own interval is complete, buffer a
        reading per meter. Returns (readings buffered, readings dropped to make room)."""
        hours = self.base_interval_s / 3600
        values = values.astype(float).copy()
        self._active = [a for a in self._active if a.until > end - timedelta(seconds=self.base_interval_s)]
        for active in self._active:
            j = self.meters.index(active.inject.meter)
            if active.inject.kind == "leak":
                values[j] += active.inject.flow * hours
            else:
                values[j] *= active.inject.factor
        self._accum += values
        self._accum_ticks += 1
        if self._accum_ticks * self.base_interval_s < self.interval_s:
            return 0, 0
        dropped = 0
        self.made = []
        for j, meter in enumerate(self.meters):
            units = round(float(self._accum[j]) * self.scale[meter])
            reg = self.registers[meter]
            reg.total_units += units
            reading = Reading(self.device_id, meter, reg.seq, end, self.interval_s, units / self.scale[meter],
                              reg.total_units / self.scale[meter], self.units[meter], life=reg.life or 0)
            self.made.append((reading, reg.total_units))
            dropped += self.enqueue(reading)
            reg.seq += 1
        self._accum[:] = 0
        self._accum_ticks = 0
        return len(self.meters), dropped

    def enqueue(self, reading: Reading) -> int:
        """Buffer a reading; returns 1 if the oldest one had to be dropped to make room."""
        self.counters.generated += 1
        dropped = 0
        if len(self.buffer) >= self.buffer_limit:
            dropped = 1
            self.buffer.popleft()
            self.counters.dropped += 1
            if self.counters.dropped == 1 or self.counters.dropped % 1000 == 0:
                logger.warning("buffer full device=%s limit=%d dropped=%d (oldest first)", self.device_id,
                               self.buffer_limit, self.counters.dropped)
        self.buffer.append(reading)
        return dropped

    # -------------------------------------------------------------------------------- commands

    def handle_command(self, payload: bytes, now: datetime) -> None:
        """Apply a command; a malformed one is logged and counted here and ignored, never raised (an
        exception would leave paho's read loop and stop every device of the fleet)."""
        try:
            command = parse_command(payload, meters=self.meters, base_interval_s=self.base_interval_s,
                                    default_leak_flow=self.options.leak_flow_m3_per_hour)
        except InvalidInput as exc:
            self.counters.bad_commands += 1
            logger.warning("ignored command device=%s reason=%s payload=%.80r", self.device_id, exc, payload)
            return
        self.counters.commands += 1
        logger.info("command device=%s %s", self.device_id, command)
        if isinstance(command, Inject):
            self._active.append(_Active(command, now + timedelta(hours=command.hours)))
        elif isinstance(command, ClearAnomalies):
            self._active.clear()
        elif isinstance(command, SetInterval):
            self.interval_s = command.interval_s
        elif isinstance(command, GoOffline):
            self.go_offline(now + timedelta(hours=command.hours))
        elif isinstance(command, ReplaceMeter):
            self.replace_meter(command, now)
        if self.on_command:
            self.on_command()

    def replace_meter(self, command: ReplaceMeter, now: datetime) -> None:
        """An installer swapped the meter: a new physical meter continues it under a new life (Unix ms now,
        above every life the device had), seq from 0 and its own start register, and the device says so
        (retained meta). Readings of the old meter still buffered keep their life."""
        reg = self.registers[command.meter]
        life = max(time.time_ns() // 1_000_000, *(r.life or 0 for r in self.registers.values()), self.life) + 1
        scale = self.scale[command.meter]
        # a new meter's register starts where its factory or installer left it: a small number
        start = round(command.total * scale) if command.total is not None else self.rng.randrange(0, 10 * scale)
        reg.seq, reg.total_units, reg.life, reg.since = 0, start, life, now
        reg.serial = command.serial or f"{self.device_id}-{command.meter}-{life}"
        logger.info("meter replaced device=%s meter=%s life=%d serial=%s register=%s since=%s", self.device_id,
                    command.meter, life, reg.serial, start / self.scale[command.meter], now.isoformat())
        if self.connected:
            self.publish_meta()

    # --------------------------------------------------------------------------------- state

    def saved(self) -> SavedDevice:
        """What a checkpoint keeps of this device (see :mod:`apt_energy.edge.state`)."""
        pending = sorted([*self.inflight.values(), *self.buffer], key=lambda r: (r.meter, r.life, r.seq))
        return SavedDevice(
            self.life, self.registers, at=self.at, interval_s=self.interval_s, offline_until=self.offline_until,
            accum=[float(x) for x in self._accum] if self._accum_ticks else [], accum_ticks=self._accum_ticks,
            active=[{"kind": a.inject.kind, "meter": a.inject.meter, "hours": a.inject.hours,
                     "factor": a.inject.factor, "flow": a.inject.flow, "until": format_ts(a.until)}
                    for a in self._active],
            pending=pending)

    def restore(self, saved: SavedDevice) -> None:
        """Continue from a checkpoint: position, commands in force, the partial interval (pending readings
        are the fleet's to re-send)."""
        self.at = saved.at
        if saved.interval_s:
            self.interval_s = saved.interval_s
        self.offline_until = saved.offline_until
        if saved.accum_ticks and len(saved.accum) == len(self.meters):
            self._accum[:] = saved.accum
            self._accum_ticks = saved.accum_ticks
        self._active = [_Active(Inject(a["kind"], a["meter"], float(a["hours"]), float(a["factor"]),
                                       float(a["flow"])), parse_ts(a["until"]))
                        for a in saved.active if a.get("meter") in self.meters]

    def accumulating(self) -> tuple[int, list[float]] | None:
        """A partial interval of the device's own (longer) interval, for the journal."""
        return (self._accum_ticks, [float(x) for x in self._accum]) if self._accum_ticks else None

    @property
    def pending(self) -> int:
        return len(self.buffer) + len(self.inflight)


def _utcnow() -> datetime:
    return datetime.now(UTC)
