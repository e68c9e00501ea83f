"""MQTT acknowledgements in receipt order, released only once Kafka has each message.

MQTT requires QoS 1 PUBACKs in the order the PUBLISHes arrived; Kafka reports deliveries per
partition, so across partitions they come back interleaved. The queue holds early finishers until
everything received before them is delivered too.
"""

from __future__ import annotations

from collections import OrderedDict


class AckQueue:
    """Tokens (``epoch << 32 | mid``) in receipt order, each released once it and all before it are delivered."""

    def __init__(self) -> None:
        self._pending: OrderedDict[int, bool] = OrderedDict()   # token → delivered?

    def received(self, token: int) -> None:
        self._pending[token] = False

    def delivered(self, token: int) -> list[int]:
        """Mark ``token`` delivered; return the tokens that may be acknowledged now, in order."""
        if token in self._pending:
            self._pending[token] = True
        ready = []
        while self._pending:
            first, done = next(iter(self._pending.items()))
            if not done:
                break
            self._pending.popitem(last=False)
            ready.append(first)
        return ready

    def forget(self) -> None:
        """The MQTT session was lost: the broker redelivers everything unacknowledged."""
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)
