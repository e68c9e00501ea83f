"""Logging, configured once by the entry point: key=value context, lazy % arguments in modules.

Every line starts with an ISO 8601 time with its zone (``2026-12-02T05:05:02.123+00:00``, UTC): logs of
processes on several machines, or read a month later, sort and compare without guessing the date or
zone. Logs go to stderr, so a command's stdout stays the data a script reads (``--json``)."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

__all__ = ["IsoFormatter", "configure", "iso_now"]

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def iso_now() -> str:
    """Now, as the log lines write it (UTC, milliseconds, explicit offset)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class IsoFormatter(logging.Formatter):
    """``%(asctime)s`` as an ISO 8601 UTC time with offset (``logging``'s default has neither zone nor 'T')."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def configure(level: str | None = None) -> None:
    """Root logger → stderr, ISO times with zone; ``APT_ENERGY_LOG_LEVEL`` when ``level`` is not given."""
    name = (level or os.environ.get("APT_ENERGY_LOG_LEVEL") or "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(IsoFormatter(FORMAT))
    logging.basicConfig(level=getattr(logging, name, logging.INFO), handlers=[handler], force=True)
    # Library chatter that says nothing a user can act on.
    for noisy in ("py4j", "urllib3", "slack_sdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
