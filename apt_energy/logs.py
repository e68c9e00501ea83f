"""Logging, configured once by the entry point: key=value context, lazy % arguments in modules."""

from __future__ import annotations

import logging
import os
import sys


def configure(level: str | None = None) -> None:
    name = (level or os.environ.get("APT_ENERGY_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, name, logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    # Library chatter that says nothing a user can act on.
    for noisy in ("py4j", "urllib3", "slack_sdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
