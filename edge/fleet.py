"""Thousands of devices in one process: one selector, one paho client per device, no thread per device.

The loop (a) connects devices in batches with jittered backoff, (b) advances the simulated clock one
fleet interval at a time when it is due (``speed`` simulated seconds per real second at most) and
while the pipeline keeps up (total unacknowledged readings under a bound), (c) hands buffered
readings to paho, (d) services the sockets epoll reports ready and (e) runs paho's keepalive.

Sequence numbers survive a restart through a high-water mark saved ahead of use (hi-lo): after a
crash a device resumes above anything it may have sent, so downstream de-duplication by
(device, meter, life, seq) can never swallow a new reading. A device without saved state (a new or
replaced gateway, a lost state volume) starts a new *life* (Unix milliseconds now) with seq 0; the life
is saved with the seqs before its first reading is published, so a restart continues the same life.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import selectors
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from apt_energy.config import Household, Settings
from apt_energy.edge.device import Device, Register
from apt_energy.edge.ledger import Ledger
from apt_energy.edge.profile import FleetModel

from apt_energy.contract import Reading

logger = logging.getLogger(__name__)

SEQ_BLOCK = 1000


STATE_FORMAT = 2   # {"format": 2, "devices": {id: {"life": L, "meters": {meter: [seq, total_units]}}}}


@dataclass
class SavedDevice:
    """A device's persisted sequence state: its life and its meters' registers."""

    life: int
    registers: dict[str, Register]


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

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("start and until must be timezone-aware")
        if self.interval_s <= 0:
            raise ValueError("interval_s must be positive")


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

    def line(self) -> str:
        rate = self.acked / self.real_s if self.real_s > 0 else 0.0
        bad = f"  bad commands {self.bad_commands:,}" if self.bad_commands else ""
        return (f"sim {self.sim_time.astimezone(UTC):%Y-%m-%d %H:%M}Z  online {self.online}/{self.devices}  "
                f"sent {self.acked:,}  buffered {self.buffered:,}  dropped {self.dropped:,}{bad}  {rate:,.0f}/s")


@dataclass
class Fleet:
    settings: Settings
    households: Sequence[Household]
    options: FleetOptions
    devices: list[Device] = field(init=False)

    def __post_init__(self) -> None:
        tz = self.settings.complex.tz
        self.model = FleetModel(self.settings, self.households)
        self.ledger = Ledger(tz)
        if self.options.ledger_path and self.options.ledger_path.exists():
            self._load_ledger(self.options.ledger_path)
        saved = self._load_state()
        self.sim_time = self.options.start
        self.index = {h.device_id: i for i, h in enumerate(self.households)}
        new_life = time.time_ns() // 1_000_000
        meters = tuple(self.settings.energy)
        states = {h.device_id: saved.get(h.device_id) or SavedDevice(new_life, {}) for h in self.households}
        for state in states.values():
            for m in meters:
                state.registers.setdefault(m, Register())
        self.devices = [
            Device(h, self.settings, base_interval_s=self.options.interval_s, buffer_limit=self.options.buffer_limit,
                   registers=states[h.device_id].registers, life=states[h.device_id].life, on_ack=self._on_ack,
                   sim_clock=lambda: self.sim_time)
            for h in self.households
        ]
        self.hwm: dict[str, dict[str, int]] = {
            d.device_id: {m: r.seq for m, r in d.registers.items()} for d in self.devices}
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
        mq = self.settings.mqtt
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

    def _tick_due(self, now: float) -> bool:
        nxt = self.sim_time + timedelta(seconds=self.options.interval_s)
        if nxt > self.options.until:
            return False
        if self.pending() > self.max_pending:
            return False  # the pipeline is behind: simulated time waits rather than piling up
        if self.options.speed <= 0:
            return True
        due = self.started + (nxt - self.options.start).total_seconds() / self.options.speed
        return now >= due

    def _tick(self) -> None:
        end = self.sim_time + timedelta(seconds=self.options.interval_s)
        self._reserve_seqs()
        values = self.model.interval_values(end, self.options.interval_s)
        self.sim_time = end
        for i, (device, row) in enumerate(zip(self.devices, values, strict=True)):
            made, dropped = device.tick(end, row)
            self.generated += made
            self.dropped += dropped
            if made:
                self.with_buffer.add(i)

    def _reserve_seqs(self) -> None:
        """Raise the saved high-water mark before any device's seq could pass it."""
        if not self.options.state_path:
            return
        if all(d.registers[m].seq + 1 < self.hwm[d.device_id][m] for d in self.devices for m in d.meters):
            return
        for d in self.devices:
            for m in d.meters:
                self.hwm[d.device_id][m] = d.registers[m].seq + SEQ_BLOCK
        self._save_state(self.hwm)

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
        self._save_state({d.device_id: {m: r.seq for m, r in d.registers.items()} for d in self.devices})
        if self.options.ledger_path:
            self.ledger.write(self.options.ledger_path)
        self._report(time.monotonic(), force=True)

    # ------------------------------------------------------------------------------- state

    def _load_state(self) -> dict[str, SavedDevice]:
        return load_state(self.options.state_path) if self.options.state_path else {}

    def _save_state(self, seqs: dict[str, dict[str, int]]) -> None:
        path = self.options.state_path
        if not path:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        devices = {d.device_id: {"life": d.life, "meters": {m: [seqs[d.device_id][m], r.total_units]
                                                           for m, r in d.registers.items()}}
                   for d in self.devices}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"format": STATE_FORMAT, "devices": devices}))
        os.replace(tmp, path)

    def _load_ledger(self, path: Path) -> None:
        self.ledger.load(path)

    # ---------------------------------------------------------------------------- progress

    def stats(self) -> FleetStats:
        c = [d.counters for d in self.devices]
        return FleetStats(self.sim_time, len(self.devices), sum(1 for d in self.devices if d.connected),
                          sum(x.generated for x in c), sum(x.acked for x in c),
                          sum(d.pending for d in self.devices), sum(x.dropped for x in c),
                          sum(x.bad_commands for x in c), time.monotonic() - self.started)

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


def load_state(path: Path) -> dict[str, SavedDevice]:
    """Saved lives and registers from ``path`` and from other shards' files beside it
    (``state-<i>-of-<n>.json``).

    When the shard split changes, a household's registers are in another shard's file: taking the latest
    life of every device and, within it, the highest saved seq of every meter from all of them keeps
    (life, seq) unique, never reused. Files from before lives (``{id: {meter: [seq, total]}}``) are life 0,
    the life their readings had."""
    files = {path, *path.parent.glob("state-*-of-*.json")} if path.name.startswith("state-") else {path}
    merged: dict[str, SavedDevice] = {}
    for file in sorted(f for f in files if f.exists()):
        data = json.loads(file.read_text())
        if data.get("format") == STATE_FORMAT:
            devices = {dev: (int(d["life"]), d["meters"]) for dev, d in data["devices"].items()}
        else:
            devices = {dev: (0, meters) for dev, meters in data.items()}
        for dev, (life, meters) in devices.items():
            known = merged.get(dev)
            if known is None or life > known.life:
                known = merged[dev] = SavedDevice(life, {})
            elif life < known.life:
                continue  # an older generation's state: its seqs belong to a life that has ended
            for meter, (seq, total) in meters.items():
                reg = known.registers.get(meter)
                if reg is None or int(seq) > reg.seq:
                    known.registers[meter] = Register(seq=int(seq), total_units=int(total))
    return merged
