"""One error tree for the whole project.

Every error apt-energy raises on purpose is an :class:`AptEnergyError`; the CLI prints its message as one
line and exits with its ``exit_code``. Library errors are converted at the boundary (``raise … from exc``).
Bad *input* (a hostile MQTT payload, a malformed reading) is not an exception that escapes a stage: it is
turned into a dead letter or a quarantine row with a reason. :class:`InvalidInput` exists so that pure
parsing functions can say why, and their callers turn that into data.
"""

from __future__ import annotations

__all__ = ["AptEnergyError", "CheckFailed", "ConfigError", "InvalidInput", "ServiceError"]


class AptEnergyError(Exception):
    """Base of every error apt-energy raises on purpose; the message says what to fix."""

    exit_code: int = 1


class ConfigError(AptEnergyError):
    """A configuration value is missing or malformed; the message names the key and the expected form."""

    exit_code = 2


class InvalidInput(AptEnergyError, ValueError):
    """A message, topic, command or template value breaks its contract; the message is the reason that
    travels with the dead letter or quarantine row."""

    exit_code = 2


class ServiceError(AptEnergyError):
    """A service (Mosquitto, Kafka, PostgreSQL, Spark, Slack, a native binary) could not be installed,
    started, reached or refused an operation; ``service`` names it."""

    def __init__(self, message: str, *, service: str = "") -> None:
        super().__init__(message)
        self.service = service


class CheckFailed(AptEnergyError):
    """A check the user asked for found a difference (the demo's truth check, a dashboard check)."""
