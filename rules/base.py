"""What every rule shares: the alert it raises, the batch it sees, how it asks for rows, and its entry.

The rules package imports nothing of the project (only the standard library): configuration imports it
to type and check the ``rules:`` section at load, and the stages (spark, alerts, dashboards, billing) import
it to evaluate, word and show the rules. So it sits below both, and a rule stays one module.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

Severity = Literal["warning", "critical"]
R = TypeVar("R")


class Invalid(ValueError):
    """A parameter out of range, raised while the settings are built; the loader prefixes the key path and
    turns it into a one-line :class:`~apt_energy.core.errors.ConfigError` (configuration's ``_Invalid``)."""

    def __init__(self, key: str, expected: str, got: object) -> None:
        super().__init__(key, expected, got)
        self.key, self.expected, self.got = key, expected, got


def require(ok: bool, key: str, expected: str, got: object) -> None:
    """Raise :class:`Invalid` unless ``ok``: the one check a parameter's ``__post_init__`` makes."""
    if not ok:
        raise Invalid(key, expected, got)


@dataclass(frozen=True)
class Alert:
    """One alert to raise (stored once per household, energy type, period and rule)."""

    household_id: int
    energy_type: str
    period: date
    rule: str          # an alert name of a registered rule (``Rule.names``)
    severity: Severity
    observed: float
    reference: float
    detail: dict[str, object] = field(default_factory=dict, compare=False)


class MonthChange(NamedTuple):
    """One energy_usage row a batch changed (what the rules see)."""

    household_id: int
    energy_type: str          # the meter key
    month: date
    before: Decimal           # month-to-date before this batch
    after: Decimal
    covered_s: int            # seconds of readings summed into the month
    inserted: int             # readings this batch added to it
    building_id: int


class Query(Protocol):
    """How a rule reads the rows it needs inside the batch's transaction (spark's sink provides it):
    ``sql`` with ``args``, each row as ``row`` (a NamedTuple of the selected columns)."""

    def rows(self, sql: str, args: Sequence[object], row: type[R]) -> list[R]: ...


@dataclass(frozen=True)
class Batch:
    """What a rule is evaluated on: the rows one batch changed, read through ``db`` in its transaction."""

    changes: Sequence[MonthChange]
    timezone: str                                   # the complex's (which local night, which month)
    db: Query
    options: Mapping[str, object] = field(default_factory=dict)   # rule key → options the application composed


@dataclass(frozen=True)
class Outcome:
    """What a rule decided for a batch: alerts to raise, stored alerts to resolve (by id), and alerts this
    same batch raised that are already over."""

    raise_alerts: list[Alert]
    resolve_ids: list[int] = field(default_factory=list)
    resolve_raised: list[Alert] = field(default_factory=list)


Fields = Callable[[Mapping[str, object], float, Mapping[str, str], Mapping[str, object]], dict[str, object]]


def no_fields(detail: Mapping[str, object], observed: float, texts: Mapping[str, str],
              fields: Mapping[str, object]) -> dict[str, object]:
    """A rule whose texts use only the common fields."""
    return {}


def no_energy_keys(params: Any) -> Mapping[str, Collection[str]]:
    """A rule whose parameters name no energy type."""
    return {}


@dataclass(frozen=True)
class Rule:
    """A rule's entry in the registry: everything the sink, the notifier, the report, the dashboards and the
    settings loader need of it, so none of them names a rule."""

    key: str                        # its section under ``rules:`` in complex.yaml
    description: str                # one line, for the report and the dashboards
    params: Any                     # the type of that section (a frozen dataclass, or a mapping of them)
    evaluate: Callable[[Batch, Any], Outcome]   # (batch, its parameters) → what to raise and resolve
    names: tuple[str, ...]          # the alert names it raises (``alerts.rule``), each a message-text key
    messages: tuple[str, ...] = ()  # further message-text keys its words need, in every language
    order: int = 100                # evaluation order in the batch's transaction
    default: Callable[[], Any] | None = None   # its parameters when complex.yaml has no section for it
    observed_unit: str | None = None           # the unit of observed/reference when not the meter's
    period_format: str = "%Y-%m"               # how its alerts' period is written (a month, a night)
    fields: Fields = no_fields                 # its own message fields: (detail, observed, texts, common)
    energy_keys: Callable[[Any], Mapping[str, Collection[str]]] = no_energy_keys  # sub-key → energy keys named

    @property
    def texts(self) -> tuple[str, ...]:
        """Every message-text key the rule needs."""
        return self.names + self.messages
