"""Thousands of devices in one process: one selector, one paho client per device, no thread per device.

The loop (a) connects devices in batches with jittered backoff, (b) advances the simulated clock one
fleet interval at a time when it is due (``speed`` simulated seconds per real second at most) and
while the pipeline keeps up (total unacknowledged readings under a bound), (c) hands buffered
readings to paho, (d) services the sockets epoll reports ready and (e) runs paho's keepalive.

A restart with the same state file resumes where the devices stopped, like real gateways that keep
running time (:mod:`apt_energy.edge.state`): each device continues after the last interval it generated,
with its next seq and register, and re-sends the readings the broker had not acknowledged with their
identity (device, meter, life, seq), so downstream de-duplication takes them once. Every interval's
readings are journaled before they are handed to MQTT, and a checkpoint is taken every few seconds, on
every command and at a stop. A device without saved state (a new or replaced gateway, a lost state
volume) starts a new *life* (Unix milliseconds now) with seq 0; the life is checkpointed before its first
reading is published, so a restart continues the same life. The ledger is appended to as PUBACKs arrive
(:mod:`apt_energy.edge.ledger`).
"""

from __future__ import annotations

import bisect
import heapq
import logging
import selectors
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from apt_energy.config import Household, Settings
from apt_energy.config.settings import MqttSettings
from apt_energy.core.contract import Reading
from apt_energy.core.errors import ConfigError
from apt_energy.core.mqtt import DeviceLogins
from apt_energy.edge.device import Device, DeviceOptions
from apt_energy.edge.ledger import Identity, Ledger
from apt_energy.edge.profile import FleetModel
from apt_energy.edge.state import STATE_FORMAT, Journal, Register, SavedDevice, journal_path, load_state, save_state

logger = logging.getLogger(__name__)

__all__ = ["STATE_FORMAT", "Fleet", "FleetOptions", "FleetStats", "Register", "SavedDevice", "load_state"]


@dataclass(frozen=True)
class FleetOptions:
    start: datetime
    until: datetime
    interval_s: int = 3600
    speed: float = 0.0                  # simulated s per real s; 0 = as fast as the pipeline takes it
    buffer_limit: int = 10_000          # readings a disconnected device keeps before dropping the oldest
    window: int = 32                    # unacknowledged QoS 1 readings per device
    connect_batch: int = 250            # new connections per loop pass
    max_pending: int = 0                # all devices' unacknowledged readings before the clock waits (0: auto)
    ledger_path: Path | None = None
    state_path: Path | None = None
    drain_timeout_s: float = 300.0
    progress_s: float = 2.0
    checkpoint_s: float = 2.0           # real seconds between checkpoints of the state (see edge/state.py)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("start and until must be timezone-aware")
        if self.interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if not 0 <= self.speed < float("inf"):
            raise ConfigError(f"speed must be 0 (as fast as the pipeline takes) or a positive number of simulated "
                              f"seconds per real second, got {self.speed:g}")


@dataclass
class FleetStats:
    sim_time: datetime
    devices: int
    online: int
    generated: int
    acked: int
    buffered: int
    dropped: int
    bad_commands: int
    real_s: float
    retained_commands: int = 0
    resumed: int = 0          # unacknowledged readings of an earlier run, re-sent with their identity

    def line(self) -> str:
        rate = self.acked / self.real_s if self.real_s > 0 else 0.0
        bad = f"  bad commands {self.bad_commands:,}" if self.bad_commands else ""
        retained = f"  retained commands ignored {self.retained_commands:,}" if self.retained_commands else ""
        resumed = f"  re-sent {self.resumed:,}" if self.resumed else ""
        return (f"sim {self.sim_time.astimezone(UTC):%Y-%m-%d %H:%M}Z  online {self.online}/{self.devices}  "
                f"sent {self.acked:,}  buffered {self.buffered:,}  dropped {self.dropped:,}{resumed}{bad}"
                f"{retained}  {rate:,.0f}/s")


@dataclass
class Fleet:
    """The devices of ``households``. Each gets its own login, derived from ``logins`` at construction; the
    fleet keeps no secret itself (``logins`` is not stored). Compose one with :meth:`from_settings`."""

    households: Sequence[Household]
    options: FleetOptions
    model: FleetModel
    device_options: DeviceOptions
    broker: MqttSettings               # where the gateways connect (host, port, keepalive); no secret
    logins: InitVar[DeviceLogins]
    devices: list[Device] = field(init=False)

    @classmethod
    def from_settings(cls, settings: Settings, households: Sequence[Household], options: FleetOptions) -> Fleet:
        """The door: the fleet's model, devices' options, broker and logins from the settings tree."""
        return cls(households, options, model=FleetModel.from_settings(settings, households),
                   device_options=DeviceOptions.from_settings(settings), broker=settings.mqtt,
                   logins=DeviceLogins.from_settings(settings))

    def __post_init__(self, logins: DeviceLogins) -> None:
        self.ledger = Ledger(self.model.tz)
        if self.options.ledger_path and self.options.ledger_path.exists():
            self.ledger.load(self.options.ledger_path)
        saved = self._load_state()
        self.index = {h.device_id: i for i, h in enumerate(self.households)}
        new_life = time.time_ns() // 1_000_000
        meters = self.device_options.meters
        states = {h.device_id: saved.get(h.device_id) or SavedDevice(new_life, {}) for h in self.households}
        for state in states.values():
            for m in meters:
                state.registers.setdefault(m, Register())
        self.devices = [
            Device(h, self.device_options, base_interval_s=self.options.interval_s,
                   buffer_limit=self.options.buffer_limit, login=logins.for_device(h.device_id),
                   registers=states[h.device_id].registers, life=states[h.device_id].life, on_ack=self._on_ack,
                   sim_clock=lambda: self.sim_time)
            for h in self.households
        ]
        for device in self.devices:
            device.restore(states[device.device_id])
            device.on_command = self._checkpoint
        # simulated time resumes after the interval the devices generated last (a later --start skips ahead)
        self.sim_time: datetime = min(max(d.at or self.options.start, self.options.start) for d in self.devices)
        self.origin = self.sim_time
        self.selector = selectors.DefaultSelector()
        self.want_write: list[Device] = []          # queued packets to write in this pass
        self.waiting_writable: set[str] = set()     # devices whose socket was full: epoll says when to go on
        for device in self.devices:
            self._wire(device)
        self.max_pending = self.options.max_pending or max(20_000, 8 * len(self.devices))
        # Running totals, so the hot loop never sums over every device.
        self.generated = self.acked = self.dropped = 0
        self.with_buffer: set[int] = set()
        self.buffered: list[Device] = []
        self.connect_queue: list[tuple[float, int]] = [(0.0, i) for i in range(len(self.devices))]
        self.resumed = self._resume(states)
        if self.options.ledger_path:
            self.ledger.open_append(self.options.ledger_path)
        self.journal = Journal(journal_path(self.options.state_path)) if self.options.state_path else None
        self._checkpoint()   # the journal of the run before is in the checkpoint now
        self.last_flush = self.last_checkpoint = time.monotonic()
        self.started = time.monotonic()
        self.drained_at: float | None = None        # monotonic: every reading of the run acknowledged
        self.stop_event = threading.Event()
        self.last_progress = 0.0
        self.progress: Callable[[FleetStats], None] | None = None

    # ------------------------------------------------------------------------------ wiring

    def _wire(self, device: Device) -> None:
        client = device.client
        sel = self.selector

        def on_open(c: mqtt.Client, userdata: object, sock: mqtt.SocketLike) -> None:
            sel.register(sock, selectors.EVENT_READ, device)

        def on_close(c: mqtt.Client, userdata: object, sock: mqtt.SocketLike) -> None:
            self.waiting_writable.discard(device.device_id)
            try:
                sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            self._schedule_reconnect(device)

        def on_want_write(c: mqtt.Client, userdata: object, sock: mqtt.SocketLike) -> None:
            # Written in this pass (see _write_wanted); epoll is asked only when the socket is full. Asking
            # it for every device's every write cost two epoll_ctl calls and an event per device and pass.
            self.want_write.append(device)

        def on_done_write(c: mqtt.Client, userdata: object, sock: mqtt.SocketLike) -> None:
            if device.device_id in self.waiting_writable:
                self.waiting_writable.discard(device.device_id)
                try:
                    sel.modify(sock, selectors.EVENT_READ, device)
                except (KeyError, ValueError):
                    pass

        client.on_socket_open = on_open
        client.on_socket_close = on_close
        client.on_socket_register_write = on_want_write
        client.on_socket_unregister_write = on_done_write

    def _schedule_reconnect(self, device: Device) -> None:
        device.connected = False
        device.next_connect_at = time.monotonic() + device.backoff.next_delay()
        heapq.heappush(self.connect_queue, (device.next_connect_at, self.index[device.device_id]))

    def _connect_some(self, now: float) -> None:
        mq = self.broker
        budget = self.options.connect_batch
        while budget and self.connect_queue and self.connect_queue[0][0] <= now:
            _, i = heapq.heappop(self.connect_queue)
            device = self.devices[i]
            if device.client.socket() is not None:
                continue
            if device.offline_until is not None and self.sim_time < device.offline_until:
                heapq.heappush(self.connect_queue, (now + 0.2, i))  # simulated outage: look again soon
                continue
            device.offline_until = None
            budget -= 1
            try:
                if not device.ever_connected:
                    device.ever_connected = True
                    device.log_in()
                    device.client.connect(mq.host, mq.port, keepalive=mq.keepalive_s, clean_start=False,
                                          properties=device.connect_properties())
                else:
                    device.client.reconnect()
            except OSError as exc:
                logger.debug("connect failed device=%s error=%s", device.device_id, exc)
                self._schedule_reconnect(device)

    # ---------------------------------------------------------------------------- readings

    def _on_ack(self, reading: Reading) -> None:
        self.acked += 1
        self.ledger.record(reading)

    def _resume(self, states: dict[str, SavedDevice]) -> int:
        """Buffer the readings an earlier run generated that the ledger does not know as acknowledged
        (all of them without a ledger): re-sent first, with their identity."""
        acked = self.ledger.acknowledged() if self.options.ledger_path else {}
        resumed = 0
        for i, device in enumerate(self.devices):
            for reading in states[device.device_id].pending:
                if _acknowledged(acked, (reading.device_id, reading.meter, reading.life), reading.seq):
                    continue
                device.buffer.append(reading)
                device.counters.generated += 1
                self.with_buffer.add(i)
                resumed += 1
        self.generated += resumed
        if resumed or self.sim_time > self.options.start:
            logger.info("edge resumes sim=%s re-sending=%d unacknowledged readings", self.sim_time.isoformat(),
                        resumed)
        return resumed

    def _tick_due(self, now: float) -> bool:
        nxt = self.sim_time + timedelta(seconds=self.options.interval_s)
        if nxt > self.options.until:
            return False
        if self.pending() > self.max_pending or not self._room():
            return False  # the pipeline is behind: simulated time waits rather than piling up
        if self.options.speed <= 0:
            return True
        due = self.started + (nxt - self.origin).total_seconds() / self.options.speed
        return now >= due

    def _room(self) -> bool:
        """Backpressure per device (the buffer is per device): the clock waits while a device that could
        send has no room for another interval's readings. A device the broker cannot reach keeps
        measuring at a set speed (a buffer that overflows then drops its oldest, counted); at full speed
        the clock waits for it too. A simulated outage (offline command) never holds the clock."""
        need = len(self.device_options.meters)
        limit = self.options.buffer_limit
        for i in self.with_buffer:
            d = self.devices[i]
            if len(d.buffer) + need > limit and d.offline_until is None and (d.connected or self.options.speed <= 0):
                return False
        return True

    def _tick(self) -> None:
        end = self.sim_time + timedelta(seconds=self.options.interval_s)
        values = self.model.interval_values(end, self.options.interval_s)
        self.sim_time = end
        made: list[tuple[Reading, int]] = []
        accum: dict[str, tuple[int, list[float]]] = {}
        for i, (device, row) in enumerate(zip(self.devices, values, strict=True)):
            if device.at is not None and device.at >= end:
                continue   # resumed ahead of the fleet (its state came from another shard's later run)
            count, dropped = device.tick(end, row)
            device.at = end
            self.generated += count
            self.dropped += dropped
            if count:
                self.with_buffer.add(i)
                made.extend(device.made)
            elif self.journal is not None and (partial := device.accumulating()) is not None:
                accum[device.device_id] = partial
        if self.journal is not None:
            self.journal.append(end, made, accum)   # before any of them reaches paho (see _network_pass)

    def _checkpoint(self) -> None:
        """Ledger first (what leaves the unacknowledged list is on disk), then the state, then an empty
        journal (see apt_energy.edge.state)."""
        self.ledger.flush(sync=True)
        if not self.options.state_path:
            return
        save_state(self.options.state_path, {d.device_id: d.saved() for d in self.devices})
        if self.journal is not None:
            self.journal.clear()
        self.last_checkpoint = time.monotonic()

    def _persist(self, now: float) -> None:
        """Acknowledgements to the ledger file several times a second (fsync'd at checkpoints), a
        checkpoint every ``checkpoint_s``."""
        if now - self.last_checkpoint >= self.options.checkpoint_s:
            self._checkpoint()
            self.last_flush = now
        elif now - self.last_flush >= 0.2:
            self.ledger.flush()
            self.last_flush = now

    def pending(self) -> int:
        """Readings generated but neither acknowledged by the broker nor dropped."""
        return self.generated - self.acked - self.dropped

    # --------------------------------------------------------------------------------- loop

    def _network_pass(self, timeout: float) -> None:
        drained = []
        for i in self.with_buffer:
            device = self.devices[i]
            if device.connected:
                device.pump(self.options.window)
            if not device.buffer:
                drained.append(i)
        self.with_buffer.difference_update(drained)
        self._write_wanted()
        buffered, self.buffered = self.buffered, []
        for device in buffered:  # bytes already read into a client's buffer make no epoll event
            if device.client.socket() is not None:
                self._read(device)
        for key, mask in self.selector.select(0.0 if self.buffered else timeout):
            device = key.data
            if mask & selectors.EVENT_READ and not self._read(device):
                continue
            if mask & selectors.EVENT_WRITE and device.client.socket() is not None:
                device.client.loop_write()

    def _write_wanted(self) -> None:
        wanted, self.want_write = self.want_write, []
        for device in wanted:
            client = device.client
            sock = client.socket()
            if sock is None or device.device_id in self.waiting_writable:
                continue
            client.loop_write()
            if client.socket() is not None and client.want_write():   # the socket took part: wait for epoll
                self.waiting_writable.add(device.device_id)
                try:
                    self.selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, device)
                except (KeyError, ValueError):
                    pass

    def _read(self, device: Device) -> bool:
        rc = device.client.loop_read()
        if device.client.has_buffered:
            self.buffered.append(device)
        return rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN)

    def _misc(self) -> None:
        for device in self.devices:
            if device.client.socket() is not None:
                device.client.loop_misc()

    def connect_all(self, timeout: float) -> float:
        """Connect every device (no readings yet); returns the seconds it took."""
        began = time.monotonic()
        last_misc = began
        while time.monotonic() - began < timeout:
            now = time.monotonic()
            self._connect_some(now)
            self._network_pass(0.01)
            if now - last_misc >= 1.0:
                self._misc()
                last_misc = now
            if all(d.connected for d in self.devices):
                return time.monotonic() - began
        raise TimeoutError(f"{sum(1 for d in self.devices if d.connected)}/{len(self.devices)} online after "
                           f"{timeout:.0f}s")

    def run(self) -> FleetStats:
        """Simulate from ``start`` to ``until``, drain, say offline, write ledger and state."""
        last_misc = 0.0
        done_since: float | None = None
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                self._connect_some(now)
                generated = 0
                while generated < 4 and self._tick_due(now):  # a few intervals per pass, then service I/O
                    self._tick()
                    generated += 1
                self._network_pass(0.0 if generated else 0.02)
                if now - last_misc >= 1.0:
                    self._misc()
                    last_misc = now
                self._report(now)
                self._persist(now)
                if self.sim_time + timedelta(seconds=self.options.interval_s) <= self.options.until:
                    continue
                if done_since is None:
                    done_since = now
                    for device in self.devices:
                        device.offline_until = None  # simulated outages end with the simulation
                if self.pending() == 0:
                    self.drained_at = now
                    break
                if now - done_since > self.options.drain_timeout_s:
                    logger.error("gave up draining after %.0fs pending=%d", self.options.drain_timeout_s,
                                 self.pending())
                    break
        finally:
            self._shutdown()
        return self.stats()

    def stop(self) -> None:
        """Ask the loop to stop (signal handlers call this); it then drains briefly and shuts down."""
        self.stop_event.set()

    def _shutdown(self) -> None:
        deadline = time.monotonic() + (10.0 if self.stop_event.is_set() else 5.0)
        while self.pending() and time.monotonic() < deadline:
            self._network_pass(0.05)
        for device in self.devices:
            device.shutdown_status()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(
                d.client.want_write() for d in self.devices if d.client.socket() is not None):
            self._network_pass(0.05)
        for device in self.devices:
            if device.client.socket() is not None:
                device.client.disconnect()
                device.client.loop_write()
        self._network_pass(0.1)
        self._checkpoint()
        if self.journal is not None:
            self.journal.close()
        if self.options.ledger_path:
            self.ledger.write(self.options.ledger_path)
        self._report(time.monotonic(), force=True)

    # ------------------------------------------------------------------------------- state

    def _load_state(self) -> dict[str, SavedDevice]:
        return load_state(self.options.state_path) if self.options.state_path else {}

    # ---------------------------------------------------------------------------- progress

    def stats(self) -> FleetStats:
        c = [d.counters for d in self.devices]
        return FleetStats(self.sim_time, len(self.devices), sum(1 for d in self.devices if d.connected),
                          sum(x.generated for x in c), sum(x.acked for x in c),
                          sum(d.pending for d in self.devices), sum(x.dropped for x in c),
                          sum(x.bad_commands for x in c), time.monotonic() - self.started,
                          sum(x.retained_commands for x in c), self.resumed)

    def _report(self, now: float, force: bool = False) -> None:
        if not force and now - self.last_progress < self.options.progress_s:
            return
        self.last_progress = now
        stats = self.stats()
        if self.progress:
            self.progress(stats)
        elif sys.stderr.isatty():
            print("\r" + stats.line() + " " * 4, end="\n" if force else "", file=sys.stderr, flush=True)
        else:
            logger.info("%s", stats.line())


def _acknowledged(acked: dict[Identity, list[list[int]]], identity: Identity, seq: int) -> bool:
    ranges = acked.get(identity)
    if not ranges:
        return False
    i = bisect.bisect_right(ranges, [seq, float("inf")]) - 1
    return i >= 0 and ranges[i][0] <= seq <= ranges[i][1]
