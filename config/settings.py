"""Typed, frozen settings loaded from ``config/*.yaml`` with environment overrides.

Precedence: CLI flag (applied by each command with :func:`dataclasses.replace`) > environment > YAML >
dataclass default. Every scalar leaf ``a.b.c`` can be overridden by ``APT_ENERGY_A_B_C``. Secrets are
never read from YAML: they come from the environment or the git-ignored ``.env`` file.

An environment value is read for the type of its setting: a string setting takes the text as it is
(``#alerts``, ``yes``, ``1e3``, ``null`` stay strings; YAML would read ``#`` as a comment), numbers and
booleans are parsed as such, lists and mappings as YAML flow (``[1, 2]``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Union

import yaml
from apt_energy.core.errors import ConfigError
from apt_energy.rules import registry as rule_registry
from apt_energy.rules.base import Invalid, require
from apt_energy.rules.registry import Rules

ENV_PREFIX = "APT_ENERGY_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent
# log4j2 for a Spark driver whose log goes to the user's terminal (the forecast job, benchmarks): errors only
SPARK_QUIET_LOG4J2 = DEFAULT_CONFIG_DIR / "spark-log4j2.properties"
# log4j2 for the stream job's driver (warnings too; the same ISO time with zone as every Python log line)
SPARK_STREAM_LOG4J2 = DEFAULT_CONFIG_DIR / "spark-log4j2-stream.properties"


def spark_driver_network(host: str) -> dict[str, str]:
    """Where a Spark driver (the stream job's, the forecast's) listens: its RPC endpoint and its block
    manager bind ``host`` only (``spark.driver.bindAddress``; by default Spark binds every interface,
    unauthenticated) and executors reach it there (``spark.driver.host``). ``spark.driver_host``:
    loopback unless a cluster on other machines needs the driver on a LAN address."""
    return {"spark.driver.bindAddress": host, "spark.driver.host": host}


CONFIG_FILES = ("complex.yaml", "pipeline.yaml", "messages.yaml")


# Raised by ``__post_init__`` checks (the rule modules' parameters' too); the loader prefixes the key path.
_Invalid = Invalid
_require = require


class Secret(str):
    """A string that never shows itself in ``repr``/logs (quix-streams' ``SecretStr`` habit)."""

    def __repr__(self) -> str:
        return "Secret('********')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)

    __str__ = __repr__


NO_SECRET = Secret("")


# --------------------------------------------------------------------------------------- the domain


@dataclass(frozen=True)
class Household:
    """One flat: building number, floor (1-based) and unit position on the floor (1-based)."""

    complex_id: str
    building: int
    floor: int
    unit: int

    @property
    def unit_code(self) -> str:
        """The flat number as written on the door: floor 12, unit 3 → ``1203``."""
        return f"{self.floor}{self.unit:02d}"

    @property
    def device_id(self) -> str:
        """The household gateway's id, also its MQTT client id and username."""
        return f"{self.complex_id}-{self.building:02d}-{self.unit_code}"


@dataclass(frozen=True)
class UnitType:
    """A flat's floor plan: what the district-heating base charge is billed on (계약면적, m²)."""

    contract_area_m2: float
    label: str = ""

    def __post_init__(self) -> None:
        _require(0 < self.contract_area_m2 < 1000, "contract_area_m2", "a number of m² > 0", self.contract_area_m2)


@dataclass(frozen=True)
class BuildingGroup:
    numbers: tuple[int, ...]
    floors: int
    units_per_floor: int
    unit_type: str = ""          # a key of complex.unit_types ("" = the complex's default)

    def __post_init__(self) -> None:
        _require(len(self.numbers) > 0 and all(n > 0 for n in self.numbers), "numbers",
                 "a non-empty list of positive building numbers", self.numbers)
        _require(1 <= self.floors <= 99, "floors", "an integer 1-99", self.floors)
        _require(1 <= self.units_per_floor <= 99, "units_per_floor", "an integer 1-99", self.units_per_floor)


@dataclass(frozen=True)
class ComplexSettings:
    id: str
    name: str
    timezone: str
    buildings: tuple[BuildingGroup, ...]
    unit_types: dict[str, UnitType] = field(default_factory=dict)
    default_unit_type: str = ""

    def __post_init__(self) -> None:
        _require(re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", self.id) is not None, "id",
                 "1-32 characters of a-z, 0-9 and '-'", self.id)
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise _Invalid("timezone", "an IANA time zone such as Asia/Seoul", self.timezone) from None
        numbers = [n for group in self.buildings for n in group.numbers]
        _require(len(numbers) == len(set(numbers)), "buildings", "each building number once", numbers)
        named = [g.unit_type or self.default_unit_type for g in self.buildings] if self.unit_types else []
        _require(all(n in self.unit_types for n in named), "buildings",
                 f"unit_type among unit_types ({', '.join(sorted(self.unit_types))})", named)

    def unit_type_of(self, building: int) -> UnitType | None:
        """The unit type of a building's flats (None when the config names no unit types)."""
        for group in self.buildings:
            if building in group.numbers:
                return self.unit_types.get(group.unit_type or self.default_unit_type)
        return None

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def households(self) -> tuple[Household, ...]:
        """Every household, ordered by building, floor, unit."""
        out = [
            Household(self.id, number, floor, unit)
            for group in self.buildings
            for number in group.numbers
            for floor in range(1, group.floors + 1)
            for unit in range(1, group.units_per_floor + 1)
        ]
        return tuple(sorted(out, key=lambda h: (h.building, h.floor, h.unit)))


@dataclass(frozen=True)
class EmissionFactor:
    value: float
    unit: str
    source: str

    def __post_init__(self) -> None:
        _require(self.value >= 0, "value", "a number ≥ 0 (kg CO2e per unit)", self.value)


# The languages an energy type has labels in (statements, Slack messages): a messages language outside
# these would show another language's label, so it stops at load instead.
LABEL_LANGUAGES: Final = ("ko", "en")


@dataclass(frozen=True)
class EnergyType:
    """One row of the energy table (``energy`` in complex.yaml): everything but the tariff, which is
    ``tariffs.yaml``'s section of the same key."""

    label_ko: str
    label_en: str
    unit: str
    decimals: int
    emission_factor: EmissionFactor

    def __post_init__(self) -> None:
        for key in ("label_ko", "label_en", "unit"):
            _require(bool(getattr(self, key).strip()), key, "a non-empty text", getattr(self, key))
        _require(0 <= self.decimals <= 6, "decimals", "an integer 0-6 (digits shown)", self.decimals)

    def label(self, lang: str) -> str:
        """The label in ``lang`` (one of LABEL_LANGUAGES)."""
        return self.label_ko if lang == "ko" else self.label_en


@dataclass(frozen=True)
class MeterModel:
    base_per_month: float
    season: tuple[float, ...]
    per_person: tuple[float, ...]

    def __post_init__(self) -> None:
        _require(self.base_per_month > 0, "base_per_month", "a number > 0", self.base_per_month)
        _require(len(self.season) == 12 and min(self.season) >= 0, "season",
                 "12 multipliers ≥ 0, January to December", self.season)
        _require(len(self.per_person) == 5 and min(self.per_person) > 0, "per_person",
                 "5 multipliers > 0 for 1..5 persons", self.per_person)


@dataclass(frozen=True)
class Anomalies:
    leak_rate_per_month: float
    leak_hours: tuple[int, int]
    leak_flow_m3_per_hour: float
    overuse_rate_per_month: float
    overuse_factor: tuple[float, float]

    def __post_init__(self) -> None:
        for key in ("leak_rate_per_month", "overuse_rate_per_month"):
            value = getattr(self, key)
            _require(0 <= value <= 1, key, "a probability 0-1", value)


@dataclass(frozen=True)
class Simulation:
    seed: int
    firmware: str
    household_size_weights: tuple[float, ...]
    meters: dict[str, MeterModel]
    habit_sigma: float
    noise_sigma: float
    anomalies: Anomalies

    def __post_init__(self) -> None:
        w = self.household_size_weights
        _require(len(w) == 5 and min(w) >= 0 and abs(sum(w) - 1) < 1e-6, "household_size_weights",
                 "5 weights ≥ 0 summing to 1", w)


CONTRACTS: Final = ("comprehensive", "single")


@dataclass(frozen=True)
class BillingSettings:
    """How the complex is billed (``billing`` in complex.yaml).

    ``contract``: 종합계약 (``comprehensive``: each flat on the residential low-voltage table) or 단일계약
    (``single``: the residential high-voltage table). ``reading_day``: the meter-reading day (검침일) a
    billing month starts on, in the complex's time zone; 1 = the calendar month."""

    contract: str = "comprehensive"
    reading_day: int = 1

    def __post_init__(self) -> None:
        _require(self.contract in CONTRACTS, "contract", " or ".join(CONTRACTS), self.contract)
        # Up to the 28th so that every month has the day.
        _require(1 <= self.reading_day <= 28, "reading_day", "a day of the month 1-28", self.reading_day)


# ------------------------------------------------------------------------------- infrastructure


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 8883          # what clients connect to: TLS when `tls` is true
    tls: bool = True
    ca_file: str = ""         # the CA clients verify the broker with; empty: the native stack's own CA
    plain_port: int = 1883    # native stack only: a loopback listener without TLS (still authenticated)
    topic_prefix: str = "apt"
    keepalive_s: int = 30
    qos: int = 1
    bridge_user: str = "apt-bridge"
    operator_user: str = "apt-operator"
    admin_user: str = "apt-admin"
    # Tests only: every role also gets its rights under "<this>/<any one level>/..." so that each test
    # can isolate itself under a prefix of its own. Empty (the default) grants nothing extra.
    test_prefix_root: str = ""

    def __post_init__(self) -> None:
        _require(1 <= self.port <= 65535, "port", "an integer 1-65535", self.port)
        _require(1 <= self.plain_port <= 65535, "plain_port", "an integer 1-65535", self.plain_port)
        _require(re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", self.topic_prefix) is not None,
                 "topic_prefix", "topic levels of letters, digits, '_', '.', '-' without wildcards",
                 self.topic_prefix)
        _require(self.qos in (0, 1, 2), "qos", "0, 1 or 2", self.qos)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:9092"
    readings_topic: str = "apt.readings"
    devices_topic: str = "apt.devices"
    dead_letter_topic: str = "apt.deadletter"
    partitions: int = 6
    security_protocol: str = "SASL_PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-256"
    admin_user: str = "apt-admin"
    bridge_user: str = "apt-bridge"
    spark_user: str = "apt-spark"

    def __post_init__(self) -> None:
        _require(self.partitions >= 1, "partitions", "an integer ≥ 1", self.partitions)
        _require(self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL", "PLAINTEXT"), "security_protocol",
                 "SASL_PLAINTEXT, SASL_SSL, or PLAINTEXT for a broker secured by other means",
                 self.security_protocol)
        _require(self.sasl_mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"), "sasl_mechanism",
                 "SCRAM-SHA-256 or SCRAM-SHA-512", self.sasl_mechanism)

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])


@dataclass(frozen=True)
class PostgresSettings:
    host: str = "127.0.0.1"
    port: int = 5433
    database: str = "apt_energy"
    owner_user: str = "apt_owner"
    writer_user: str = "apt_writer"
    reader_user: str = "apt_reader"
    reader_statement_timeout_s: int = 10
    reader_idle_in_transaction_timeout_s: int = 30
    reader_connection_limit: int = 20
    writer_connection_limit: int = 150

    def __post_init__(self) -> None:
        _require(1 <= self.port <= 65535, "port", "an integer 1-65535", self.port)
        for key in ("reader_statement_timeout_s", "reader_idle_in_transaction_timeout_s", "reader_connection_limit",
                    "writer_connection_limit"):
            _require(getattr(self, key) >= 1, key, "an integer ≥ 1", getattr(self, key))


@dataclass(frozen=True)
class BridgeSettings:
    group: str = "apt-bridge"
    shared_subscription: bool = False
    client_id: str = "apt-bridge-1"
    session_expiry_s: int = 86400
    max_in_flight: int = 20000
    max_payload_bytes: int = 4096
    stats_interval_s: float = 10.0

    def __post_init__(self) -> None:
        _require(self.max_in_flight >= 1, "max_in_flight", "an integer ≥ 1", self.max_in_flight)


# The Spark JVMs' JIT. Measured on 2 cores (bench_spark, same data): C2 compiling Spark's per-batch code
# (closure cleaning, task serialisation) kept a third of a core busy for minutes and the JVM's CPU per
# reading fell by a third with C1 alone, at the same sustained rate. A big executor that runs for days
# may prefer full.
JIT_OPTIONS: Final[Mapping[str, str]] = {"quick": "-XX:TieredStopAtLevel=1", "full": ""}


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[2]"
    trigger_s: float = 1.0
    checkpoint_dir: str = ".run/spark/checkpoints"
    max_offsets_per_trigger: int = 200000
    shuffle_partitions: int = 4
    max_future_s: int = 3600
    max_past_days: int = 3650
    jit: str = "quick"     # quick: the JVM's C1 compiler only; full: C1 then C2 (see JIT_OPTIONS)
    driver_host: str = "127.0.0.1"   # the drivers' listening address (spark_driver_network)

    def __post_init__(self) -> None:
        _require(self.trigger_s > 0, "trigger_s", "a number of seconds > 0", self.trigger_s)
        _require(self.jit in JIT_OPTIONS, "jit", " or ".join(JIT_OPTIONS), self.jit)


@dataclass(frozen=True)
class SlackSettings:
    channel: str = "#apt-energy-alerts"
    language: str = "ko"
    digest_after: int = 5
    poll_s: float = 2.0

    def __post_init__(self) -> None:
        _require(re.fullmatch(r"[a-z]{2}", self.language) is not None, "language", "a language code like ko or en",
                 self.language)


@dataclass(frozen=True)
class AlertSettings:
    """Alert lifecycle: escalation of unacknowledged alerts, quiet hours, who may press Slack's buttons."""

    escalate_after_min: dict[str, float] = field(default_factory=lambda: {"warning": 60.0, "critical": 15.0})
    quiet_hours: dict[str, str] = field(default_factory=dict)   # severity → "22:00-07:00" (complex's zone)
    operators: tuple[str, ...] = ()   # Slack user ids (U…) whose button presses count; empty: nobody's
    app_id: str = ""                  # the Slack app's id (A…): interactions from any other app are refused
    team_id: str = ""                 # the workspace's id (T…): interactions from any other team are refused

    def __post_init__(self) -> None:
        for sev, minutes in self.escalate_after_min.items():
            _require(sev in ("warning", "critical"), "escalate_after_min", "severities warning and critical", sev)
            _require(minutes > 0, f"escalate_after_min.{sev}", "minutes > 0", minutes)
        for sev, window in self.quiet_hours.items():
            _require(sev in ("warning", "critical"), "quiet_hours", "severities warning and critical", sev)
            _require(re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]", window) is not None,
                     f"quiet_hours.{sev}", "a window like 22:00-07:00", window)


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus endpoints of the long-lived processes (core/metrics.py): off unless enabled, loopback
    unless ``host`` says otherwise. Bridge part i of n listens on ``bridge_port + i``, edge shard i on
    ``fleet_port + i``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    bridge_port: int = 9470
    fleet_port: int = 9480
    spark_port: int = 9466
    notifier_port: int = 9467

    def __post_init__(self) -> None:
        for key in ("bridge_port", "fleet_port", "spark_port", "notifier_port"):
            port = getattr(self, key)
            _require(0 <= port <= 65535, key, "a TCP port 0-65535 (0: any free port)", port)


@dataclass(frozen=True)
class StackSettings:
    run_dir: str = ".run"
    cache_dir: str = "~/.cache/apt-energy"
    kafka_controller_port: int = 9093
    kafka_heap: str = "768m"
    kafka_brokers: int = 1    # > 1: a KRaft cluster; node i listens on the bootstrap / controller port + 2·i

    def __post_init__(self) -> None:
        _require(1 <= self.kafka_brokers <= 9, "kafka_brokers", "a number of brokers 1-9", self.kafka_brokers)


@dataclass(frozen=True)
class Secrets:
    """Credentials from the environment (or ``.env``); masked in every repr."""

    db_owner_password: Secret = NO_SECRET
    kafka_admin_password: Secret = NO_SECRET
    kafka_bridge_password: Secret = NO_SECRET
    kafka_spark_password: Secret = NO_SECRET
    db_password: Secret = NO_SECRET
    db_reader_password: Secret = NO_SECRET
    slack_bot_token: Secret = NO_SECRET
    slack_webhook_url: Secret = NO_SECRET
    slack_app_token: Secret = NO_SECRET   # Socket Mode (xapp-…): Slack's buttons without a public URL
    mqtt_device_secret: Secret = NO_SECRET
    mqtt_bridge_password: Secret = NO_SECRET
    mqtt_operator_password: Secret = NO_SECRET
    mqtt_admin_password: Secret = NO_SECRET
    slack_base_url: str = ""  # Slack API base URL override: tests point it at a local stand-in

    ENV_NAMES: typing.ClassVar[dict[str, str]] = {
        "db_owner_password": "APT_ENERGY_DB_OWNER_PASSWORD",
        "kafka_admin_password": "APT_ENERGY_KAFKA_ADMIN_PASSWORD",
        "kafka_bridge_password": "APT_ENERGY_KAFKA_BRIDGE_PASSWORD",
        "kafka_spark_password": "APT_ENERGY_KAFKA_SPARK_PASSWORD",
        "db_password": "APT_ENERGY_DB_PASSWORD",
        "db_reader_password": "APT_ENERGY_DB_READER_PASSWORD",
        "slack_bot_token": "SLACK_BOT_TOKEN",
        "slack_webhook_url": "SLACK_WEBHOOK_URL",
        "slack_app_token": "SLACK_APP_TOKEN",
        "mqtt_device_secret": "APT_ENERGY_MQTT_DEVICE_SECRET",
        "mqtt_bridge_password": "APT_ENERGY_MQTT_BRIDGE_PASSWORD",
        "mqtt_operator_password": "APT_ENERGY_MQTT_OPERATOR_PASSWORD",
        "mqtt_admin_password": "APT_ENERGY_MQTT_ADMIN_PASSWORD",
        "slack_base_url": "SLACK_API_BASE_URL",
    }


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline is configured with. Build it with :func:`load`."""

    complex: ComplexSettings
    energy: dict[str, EnergyType]
    rules: Rules
    simulation: Simulation
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    messages: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: Secrets = field(default_factory=Secrets)

    def __post_init__(self) -> None:
        keys = set(self.energy)
        for key, energy in self.energy.items():
            # energy_usage.energy_type is the original VARCHAR(10) and holds the Korean label.
            _require(len(energy.label_ko) <= 10, f"energy.{key}.label_ko", "at most 10 characters",
                     energy.label_ko)
            _require(re.fullmatch(r"[a-z][a-z0-9_]{0,19}", key) is not None, "energy",
                     "energy keys of a-z, 0-9, '_' (topic levels)", key)
        _require(set(self.simulation.meters) == keys, "simulation.meters",
                 f"exactly the energy types {sorted(keys)}", sorted(self.simulation.meters))
        registry = rule_registry.current()
        for rule in registry:
            for sub, named in rule.energy_keys(getattr(self.rules, rule.key)).items():
                _require(set(named) <= keys, ".".join(("rules", rule.key, sub)).rstrip("."),
                         f"keys among {sorted(keys)}", sorted(named))
        # A rule's words are checked here, not when its first alert is sent.
        for missing, rule_key in registry.missing_texts(self.messages):
            _require(False, missing, f"a message text (the {rule_key} rule needs it)", None)
        _require(set(self.messages) <= set(LABEL_LANGUAGES), "messages",
                 f"languages the energy table has labels for ({', '.join(LABEL_LANGUAGES)})", sorted(self.messages))
        _require(self.slack.language in self.messages, "slack.language",
                 f"a language with templates in messages ({', '.join(sorted(self.messages))})", self.slack.language)

    def path(self, value: str) -> Path:
        """Resolve a configured path: ``~`` expanded, relative paths under the project root."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else PROJECT_ROOT / p

    @property
    def run_dir(self) -> Path:
        return self.path(self.stack.run_dir)

    @property
    def cache_dir(self) -> Path:
        return self.path(self.stack.cache_dir)

    @property
    def mqtt_ca_file(self) -> Path:
        """The CA that signs the broker's certificate: ``mqtt.ca_file``, else the native stack's own."""
        return self.path(self.mqtt.ca_file) if self.mqtt.ca_file else self.run_dir / "mosquitto" / "tls" / "ca.crt"


# ------------------------------------------------------------------------------------ the loader


def load(config_dir: Path | str | None = None, environ: Mapping[str, str] | None = None, *,
         dotenv: Path | None = PROJECT_ROOT / ".env") -> Settings:
    """Read ``complex.yaml`` and ``pipeline.yaml``, apply environment overrides (``environ``, default
    ``os.environ``, over the ``dotenv`` file's lines), type-check.

    Raises :class:`ConfigError` with one line naming the file, the key and the expected form.
    """
    directory = Path(config_dir or os.environ.get("APT_ENERGY_CONFIG_DIR") or DEFAULT_CONFIG_DIR)
    env = (dict(read_dotenv(dotenv)) if dotenv else {}) | dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name in CONFIG_FILES:
        path = directory / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror}); expected a YAML file") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
        for section, value in data.items():
            if section in raw:
                raise ConfigError(f"{path}: {section}: section already defined in {origin[section]}")
            raw[section] = value
            origin[section] = str(path)
    if "secrets" in raw:
        raise ConfigError(f"{origin['secrets']}: secrets: never in YAML; set them in the environment or .env")
    for key, env_name, tp in _env_leaves(Settings, raw):
        if env_name in env:
            origin[key] = f"env {env_name}"
            try:
                _set_path(raw, key, env_value(tp, env[env_name]))
            except yaml.YAMLError:
                raise ConfigError(f"env {env_name}: {key}: expected {_type_name(tp)}, got {env[env_name]!r}") from None
    raw["secrets"] = {
        attr: env.get(name, "") for attr, name in Secrets.ENV_NAMES.items()
    }
    refuse_example_secrets(env, Secrets.ENV_NAMES.values())
    try:
        settings: Settings = _build(Settings, raw, "")
    except _LoadError as exc:
        top = exc.key.split(".")[0]
        source = origin.get(exc.key, origin.get(top, str(directory)))
        raise ConfigError(f"{source}: {exc.key}: expected {exc.expected}, got {exc.got!r}") from None
    require_tariffs(directory / TARIFFS_FILE, settings.energy)
    return settings


TARIFFS_FILE = "tariffs.yaml"


def require_tariffs(path: Path, energy: Mapping[str, EnergyType]) -> None:
    """Fail closed: every energy type needs its tariff section in ``tariffs.yaml``, naming its tariff
    ``kind``, or it would be billed by nothing (or, as once happened, by another energy's tariff); and
    every section needs an energy type (a typo would leave the real one without rates). Only the sections'
    presence and ``kind`` are checked here; billing/tariffs.py type-checks their contents at the
    application's door (config imports no stage)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); expected the tariffs of "
                          f"{', '.join(sorted(energy))}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    sections = data if isinstance(data, dict) else {}
    for key in energy:
        if not isinstance(sections.get(key), dict):
            raise ConfigError(f"{path}: no tariff for energy type {key!r} (energy.{key}): add a `{key}:` section "
                              "with its `kind:` and dated, sourced rates (see the other sections)")
        if not isinstance(sections[key].get("kind"), str):
            raise ConfigError(f"{path}: {key}.kind: missing; name the tariff kind energy type {key!r} is billed "
                              "by (see the file's head)")
    for key in sections:
        if key not in energy:
            raise ConfigError(f"{path}: {key}: a tariff for an energy type not in the energy table "
                              f"({', '.join(energy)}): add `energy.{key}` to complex.yaml or remove the section")


# .env.example's placeholders all start with this; a deployment that still has one is refused.
EXAMPLE_SECRET_PREFIX = "change-me"  # noqa: S105 - a placeholder to refuse, not a secret


def refuse_example_secrets(env: Mapping[str, str], names: Iterable[str]) -> None:
    """Stop with one line naming the first secret that still has its ``.env.example`` value."""
    for name in names:
        if env.get(name, "").startswith(EXAMPLE_SECRET_PREFIX):
            raise ConfigError(f"{name} still has the example value from .env.example: set a secret of your own "
                              "(`apt-energy stack secrets` replaces every example value with a random one)")


def read_dotenv(path: Path) -> Iterator[tuple[str, str]]:
    """``KEY=value`` lines of a ``.env`` file (docker compose reads the same file)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            yield key.strip(), value.strip().strip("'\"")


_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
_INT = re.compile(r"[+-]?[0-9][0-9_]*")


def env_value(tp: Any, text: str) -> Any:
    """An environment variable's text as a value for a setting of type ``tp``. Text that does not fit
    is returned as it is, so the type check names the variable and the expected form."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
        origin = typing.get_origin(tp)
    if tp in (str, Secret) or text == "":
        return text
    stripped = text.strip()
    if tp is bool:
        return _BOOLS.get(stripped.lower(), text)
    if tp is int:
        return int(stripped) if _INT.fullmatch(stripped) else text
    if tp is float:
        try:
            return float(stripped)
        except ValueError:
            return text
    if origin in (tuple, list, dict) or dataclasses.is_dataclass(tp):
        return yaml.safe_load(text)
    return text


def env_overrides(cls: type, raw: Mapping[str, Any] | None = None, prefix: str = "") -> Iterator[
        tuple[str, str, str]]:
    """Yield ``(key path, environment variable, type name)`` for every overridable scalar."""
    for key, env_name, tp in _env_leaves(cls, raw, prefix):
        yield key, env_name, _type_name(tp)


def _env_leaves(cls: type, raw: Mapping[str, Any] | None = None, prefix: str = "") -> Iterator[
        tuple[str, str, Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "secrets":
            continue
        key = f"{prefix}{f.name}"
        tp = _section(hints[f.name])
        sub = raw.get(f.name) if isinstance(raw, Mapping) else None
        if dataclasses.is_dataclass(tp):
            yield from _env_leaves(tp, sub, key + ".")  # type: ignore[arg-type]
        elif typing.get_origin(tp) is dict:
            value_tp = typing.get_args(tp)[1]
            for name in (sub or {}) if isinstance(sub, Mapping) else ():
                if dataclasses.is_dataclass(value_tp):
                    yield from _env_leaves(value_tp, sub[name], f"{key}.{name}.")  # type: ignore[arg-type,index]
                else:
                    yield f"{key}.{name}", _env_name(f"{key}.{name}"), value_tp
        else:
            yield key, _env_name(key), tp


def _env_name(key: str) -> str:
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", key).upper()


def _set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


class _LoadError(Exception):
    def __init__(self, key: str, expected: str, got: object) -> None:
        super().__init__(key)
        self.key, self.expected, self.got = key, expected, got


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp in (str, Secret):
        return "a string"
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a list of {len(args)} values"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _section(tp: Any) -> Any:
    """The ``rules:`` section is typed by the rule modules the registry holds (one field per rule)."""
    return rule_registry.current().section if tp is Rules else tp


def _build(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the type ``tp`` and build it; errors name the dotted ``key``."""
    tp = _section(tp)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _build(options[0], value, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _LoadError(key or "(top level)", "a mapping", value)
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        for extra in value:
            if extra not in names:
                raise _LoadError(f"{key}.{extra}" if key else str(extra),
                                 f"one of the known keys ({', '.join(sorted(names))})", extra)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            sub = f"{key}.{f.name}" if key else f.name
            if f.name in value:
                kwargs[f.name] = _build(hints[f.name], value[f.name], sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _LoadError(sub, f"{_type_name(hints[f.name])} (required)", None)
        try:
            return tp(**kwargs)  # type: ignore[operator]
        except _Invalid as exc:
            raise _LoadError(f"{key}.{exc.key}" if key else exc.key, exc.expected, exc.got) from None
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _LoadError(key, "a mapping", value)
        value_tp = typing.get_args(tp)[1]
        return {str(k): _build(value_tp, v, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise _LoadError(key, _type_name(tp), value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _LoadError(key, _type_name(tp), value)
        return tuple(_build(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if tp is Secret:
        return Secret(value or "")
    if tp is bool:
        if not isinstance(value, bool):
            raise _LoadError(key, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _LoadError(key, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise _LoadError(key, "a number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _LoadError(key, "a string", value)
        return str(value)
    raise _LoadError(key, _type_name(tp), value)
