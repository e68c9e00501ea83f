"""Which share of the complex this process simulates when it is one of N identical replicas
(``docker compose up --scale edge=N``).

Docker's embedded DNS answers the service name with every replica's address and each address with the
replica's container name (``apt-energy-edge-3``, or ``apt-energy_edge_3`` under compose v1). Sorting the
replicas by that number gives each one a stable shard ``i`` of ``n`` with no coordinator.

A household must never run in two replicas at once (its readings would be counted twice), so when the
replica set changes every replica stops and exits for compose to restart it, and a starting replica first
waits until the set has been stable for longer than the others take to notice and stop.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable

from apt_energy.core.errors import ConfigError

logger = logging.getLogger(__name__)

Replicas = tuple[str, tuple[str, ...]]      # (this replica's name, every replica's name)
_NUMBER = re.compile(r"[-_](\d+)(?:\.|$)")


def replica_number(name: str) -> int:
    match = _NUMBER.search(name)
    if not match:
        raise ConfigError(f"container name {name!r} carries no replica number (expected e.g. apt-energy-edge-2)")
    return int(match.group(1))


def assign(replicas: Replicas) -> tuple[int, int]:
    """Shard ``(i, n)``: this replica's rank among all replicas by replica number."""
    me, everyone = replicas
    ranked = sorted(set(everyone), key=replica_number)
    if me not in ranked:
        raise ConfigError(f"{me} is not among the replicas DNS lists ({', '.join(ranked)})")
    return ranked.index(me), len(ranked)


def numbered_name(entry: tuple[str, list[str], list[str]]) -> str:
    """The name carrying a replica number among a ``gethostbyaddr`` answer's names. A container's own
    address comes from its /etc/hosts, whose first name is the hostname (the container id), with the
    container name as an alias (podman; measured under make compose-test); DNS answers the others'."""
    host, aliases, _ = entry
    return next((n for n in (host, *aliases) if _NUMBER.search(n)), host)


def discover(service: str) -> Replicas:
    """Read the replica set from DNS (inside a compose network)."""
    try:
        mine = set(socket.gethostbyname_ex(socket.gethostname())[2])
        addresses = socket.gethostbyname_ex(service)[2]
        names = {ip: numbered_name(socket.gethostbyaddr(ip)) for ip in addresses}
    except OSError as exc:
        raise ConfigError(f"cannot resolve the replicas of service {service!r}: {exc} "
                         "(--shard auto works inside docker compose; elsewhere use --shard i/n)") from exc
    me = next((names[ip] for ip in addresses if ip in mine), None)
    if me is None:
        raise ConfigError(f"none of this container's addresses {sorted(mine)} is among {service!r}'s {addresses}")
    return me, tuple(sorted(names.values()))


def settle(resolve: Callable[[], Replicas], *, stable_s: float, timeout_s: float = 600,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
           poll_s: float = 1.0) -> Replicas:
    """The replica set once it has stayed the same for ``stable_s`` (replicas start one by one)."""
    started = clock()
    current, since = resolve(), clock()
    while clock() - since < stable_s:
        if clock() - started > timeout_s:
            raise ConfigError(f"the replica set kept changing for {timeout_s:.0f} s")
        sleep(poll_s)
        seen = resolve()
        if set(seen[1]) != set(current[1]):
            logger.info("edge replicas changed while settling n=%d→%d", len(current[1]), len(seen[1]))
            current, since = seen, clock()
    return current


class MembershipWatch:
    """Calls ``on_change`` (once) when the replica set differs from ``replicas``; polls in a daemon thread."""

    def __init__(self, resolve: Callable[[], Replicas], replicas: Replicas, *, poll_s: float,
                 on_change: Callable[[Replicas], None]) -> None:
        self.resolve, self.replicas, self.poll_s, self.on_change = resolve, replicas, poll_s, on_change
        self.changed: Replicas | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edge-replicas", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                seen = self.resolve()
            except ConfigError as exc:
                logger.warning("edge replicas not readable, keeping the current shard: %s", exc)
                continue
            if set(seen[1]) != set(self.replicas[1]):
                self.changed = seen
                self.on_change(seen)
                return
