"""Which MQTT topics a bridge subscribes to and keeps: bridge ``i`` of ``n`` owns a fixed set of buildings.

Why not a shared subscription (``$share/<group>/...``): Mosquitto 2.0.11 (Debian 12) restores persistent
sessions and their queues after a restart, but not shared subscriptions, so what devices publish between
the broker's restart and the bridges' resubscribe is discarded (2.6 % of readings in one measured run).
Plain subscriptions in a persistent session are restored with it, so splitting the work by building
keeps the split *and* loses nothing:

* part ``i > 0`` subscribes ``<prefix>/<complex>/<bb>/#`` for each of its buildings (every n-th of the
  complex's buildings in order, starting at the i-th) and keeps all it receives;
* part ``0`` subscribes ``<prefix>/#``: its own buildings plus everything no building filter covers
  (unknown buildings and complexes, misrouted topics, which must reach the dead-letter topic). It keeps
  what no other part owns and acknowledges the rest without forwarding. MQTT filters cannot express
  "everything except these buildings", so this is the only way to catch every stray topic exactly once;
  its cost is that part 0 reads (and acknowledges) all traffic, and forwards only its share.

Every topic is thus forwarded by exactly one part: the owner of its building level if that level is one of
the complex's buildings, else part 0. A client subscribes to no two overlapping filters (Mosquitto would
deliver the message twice), and on every connect it unsubscribes the filters other layouts would have left
in its persistent session (another ``n``, or the shared subscription), so changing the layout duplicates
nothing either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from apt_energy.core.errors import ConfigError

__all__ = ["Part", "Partition"]


@dataclass(frozen=True)
class Part:
    """Part ``index`` of ``count`` (``0/1``: one bridge does everything)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ConfigError(f"bridge part: expected i/n with 0 ≤ i < n, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Part:
        """``"1/3"`` → ``Part(1, 3)``; raises :class:`ConfigError` naming the expected form."""
        match = re.fullmatch(r"\s*(\d{1,4})\s*/\s*(\d{1,4})\s*", text)
        if not match:
            raise ConfigError(f"bridge part: expected i/n such as 0/2, got {text[:40]!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Partition:
    """The subscriptions of one part, and the test of whether it keeps a received topic.

    ``shared_group`` selects the old layout instead (one ``$share/<group>/<prefix>/#`` for all bridges):
    it spreads load dynamically but loses messages across a Mosquitto restart; only part ``0/1``.
    """

    prefix: str
    complex_id: str
    buildings: tuple[int, ...]
    part: Part = Part()
    shared_group: str | None = None
    former_groups: tuple[str, ...] = ()   # shared-subscription groups this client may have joined before
    _owner: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = sorted(set(self.buildings))
        owner = {f"{b:02d}": k % self.part.count for k, b in enumerate(ordered)}
        object.__setattr__(self, "_owner", owner)
        if self.shared_group is not None and self.part.count > 1:
            raise ConfigError("bridge part: a shared subscription already splits the load; use either "
                              "--part or bridge.shared_subscription, not both")
        if self.part.count > max(len(ordered), 1):
            raise ConfigError(f"bridge part: {self.part} but the complex has {len(ordered)} buildings; "
                              f"at most {len(ordered)} parts")

    @property
    def everything(self) -> str:
        """The catch-all filter: every topic under the prefix."""
        return f"{self.prefix}/#"

    def _building_filter(self, level: str) -> str:
        return f"{self.prefix}/{self.complex_id}/{level}/#"

    def own_buildings(self) -> list[str]:
        """The building levels (``07``) this part forwards."""
        return [level for level, owner in self._owner.items() if owner == self.part.index]

    def subscriptions(self) -> list[str]:
        """The filters this part subscribes to (no two of them overlap)."""
        if self.shared_group is not None:
            return [f"$share/{self.shared_group}/{self.everything}"]
        if self.part.index == 0:
            return [self.everything]
        return [self._building_filter(level) for level in self.own_buildings()]

    def stale(self) -> list[str]:
        """Filters another layout may have left in this client's persistent session: unsubscribed on
        connect (unsubscribing a filter the session does not hold is harmless)."""
        candidates = [self.everything, *(self._building_filter(level) for level in self._owner),
                      *(f"$share/{g}/{self.everything}" for g in self.former_groups)]
        mine = set(self.subscriptions())
        return [f for f in dict.fromkeys(candidates) if f not in mine]

    def keeps(self, topic: str) -> bool:
        """Whether this part forwards a message received on ``topic`` (the others acknowledge and drop it
        because its owner forwards it). Total: any string."""
        if self.shared_group is not None or self.part.count == 1:
            return True
        head = f"{self.prefix}/{self.complex_id}/"
        owner = self._owner.get(topic[len(head):].split("/", 1)[0]) if topic.startswith(head) else None
        return (owner if owner is not None else 0) == self.part.index
