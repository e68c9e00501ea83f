"""Counters in the spirit of EMQX's bridge metrics, and their one-line and JSON forms."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class BridgeStats:
    """What one bridge did since it started; written to its stats file for ``apt-energy bridge --stats``."""

    received: int = 0
    duplicates_flagged: int = 0     # DUP set by the broker: a redelivery, forwarded all the same
    forwarded: int = 0              # readings + device messages confirmed by Kafka
    dead_lettered: int = 0
    skipped: int = 0                # commands to devices seen under the prefix: acknowledged, not forwarded
    passed_over: int = 0            # another part's building, seen through part 0's catch-all: acknowledged only
    acked: int = 0
    kafka_errors: int = 0
    reproduced: int = 0             # sent again after a delivery failure
    reconnects: int = 0
    in_flight: int = 0
    subscribed: bool = False
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (f"received {self.received:,}  forwarded {self.forwarded:,}  dead-lettered {self.dead_lettered:,}  "
                f"in flight {self.in_flight:,}  kafka errors {self.kafka_errors:,}  reconnects {self.reconnects}  "
                f"{self.forwarded / elapsed:,.0f}/s")

    def write(self, path: Path) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "started"}
        data["updated"] = time.time()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
