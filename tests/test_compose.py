"""compose.yaml and the Dockerfile, checked with real parsers (no Docker engine runs here): Debian's
docker-compose resolves the file (interpolation, anchors, depends_on), the compose-spec JSON schema of
compose-go (the library docker compose v2 loads files with) validates it, and every command the project
image runs must parse with the image's entry point, apt-energy."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from apt_energy.app.cli import build_parser

from apt_energy import config

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_GO = "v2.16.2"
SCHEMA_URL = f"https://proxy.golang.org/github.com/compose-spec/compose-go/v2/@v/{COMPOSE_GO}.zip"
PROJECT_IMAGE = "apt-energy:local"


def environment_without(*prefixes: str) -> dict[str, str]:
    """This process's environment minus the variables compose would otherwise take from it."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def example_env() -> dict[str, str]:
    """.env.example with every value filled in, as a user's .env is after `apt-energy stack secrets`."""
    env = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = f"test-{name.lower()}" if not value or value.startswith("change-me") else value
    return env


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`docker-compose config`: the file as Compose understands it, variables from .env filled in."""
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is missing: run `make bootstrap` (installs Debian's docker-compose)")
    work = tmp_path_factory.mktemp("compose")
    env = environment_without("APT_ENERGY_", "MQTT_", "SLACK_")
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "compose.yaml"), "--project-directory", str(ROOT),
                             "config"], env={**env, **example_env()}, cwd=work, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    cache = config.load().cache_dir / "compose-spec" / f"compose-spec-{COMPOSE_GO}.json"
    if not cache.exists():
        data = urllib.request.urlopen(SCHEMA_URL, timeout=60).read()
        member = f"github.com/compose-spec/compose-go/v2@{COMPOSE_GO}/schema/compose-spec.json"
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(zipfile.ZipFile(io.BytesIO(data)).read(member))
    return json.loads(cache.read_text())


def raw() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_is_valid_against_the_compose_spec_schema(schema: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(raw(), schema)


def test_missing_passwords_stop_compose_with_a_message_naming_them(tmp_path: Path) -> None:
    env = environment_without("APT_ENERGY_", "MQTT_", "SLACK_", "GRAFANA")
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "compose.yaml"), "--project-directory", str(tmp_path),
                             "config", "-q"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert re.search(r"set \w+ in \.env", result.stderr), result.stderr


def test_no_password_is_written_in_the_file() -> None:
    text = (ROOT / "compose.yaml").read_text()
    for match in re.finditer(r"(?im)^\s*(\w*(?:PASSWORD|TOKEN|WEBHOOK_URL)\w*):\s*(.+)$", text):
        assert match.group(2).startswith("${"), f"{match.group(1)} has a literal value"


def test_every_service_waits_for_healthy_dependencies_and_every_server_has_a_healthcheck(
        resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == {"setup", "mosquitto", "kafka", "postgres", "init", "spark", "bridge", "edge", "grafana"}
    for name in ("mosquitto", "kafka", "postgres", "bridge", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        for dep, cond in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in ("init", "setup") else "service_healthy"
            assert cond["condition"] == expected, f"{name} → {dep}"
    assert set(services["edge"]["depends_on"]) == {"bridge"}   # devices publish once the bridge subscribed
    assert {"init", "kafka", "postgres"} <= set(services["spark"]["depends_on"])
    # a placeholder left in .env stops everything: every server waits for setup, which checks them all first
    for name in ("mosquitto", "kafka", "postgres"):
        assert "setup" in services[name]["depends_on"], name


def test_state_lives_in_named_volumes(resolved: dict[str, Any]) -> None:
    assert set(resolved["volumes"]) == {"pki", "mqtt-ca", "mosquitto-secure", "mosquitto-data", "kafka-secure",
                                        "kafka-data", "postgres-data", "spark-checkpoints", "edge-state",
                                        "grafana-data"}
    spark = resolved["services"]["spark"]
    checkpoint = "/var/lib/apt-energy/spark/checkpoints"   # the image's APT_ENERGY_SPARK_CHECKPOINT_DIR
    assert any(checkpoint.startswith(v.split(":")[1]) for v in spark["volumes"])
    assert checkpoint in (ROOT / "Dockerfile").read_text()


def test_the_images_entry_point_is_the_projects_console_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry == ["apt-energy"] and "apt-energy" in scripts
    copied = re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.M)
    for source in copied:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in package_dirs.items():   # `pip install .` in the image needs every package's folder
        assert folder in copied, f"Dockerfile does not copy {folder}/ ({package})"


def test_every_project_service_command_parses_with_the_entry_point(
        resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    project = {n: s for n, s in resolved["services"].items() if s.get("image") == PROJECT_IMAGE}
    assert set(project) == {"setup", "init", "spark", "bridge", "edge"}
    for name, service in project.items():
        with monkeypatch.context() as m:
            for key, value in service.get("environment", {}).items():
                m.setenv(key, str(value))
            args = build_parser().parse_args(service["command"])   # argparse exits (fails the test) if not
            assert args.func is not None, name
            if name == "edge":
                assert args.shard == "auto" and args.interval == 15 * 60 and args.speed == 1


def test_grafana_datasource_variables_match_the_pipeline_settings(resolved: dict[str, Any]) -> None:
    settings = config.load()
    env = resolved["services"]["grafana"]["environment"]
    assert env["APT_ENERGY_POSTGRES_DATABASE"] == settings.postgres.database
    assert env["APT_ENERGY_POSTGRES_READER_USER"] == settings.postgres.reader_user
    provisioning = (ROOT / "dashboards" / "provisioning" / "datasources" / "apt-energy.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)\}", re.sub(r"(?m)#.*$", "", provisioning)))
    assert used
    for name in used:
        assert name in env, f"the datasource reads ${{{name}}}, which compose does not pass to grafana"


def test_the_wheel_the_image_installs_carries_migrations_poms_and_dashboards(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                             "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    for path in ("apt_energy/database/migrations/0001_complex.sql", "apt_energy/stack/maven/spark-kafka.pom.xml",
                 "apt_energy/config/pipeline.yaml", "apt_energy/dashboards/json/overview.json",
                 "apt_energy/edge/fleet.py", "apt_energy/config/mosquitto/mosquitto.conf"):
        assert path in names


# --- least privilege (issue 13): what a reader of the resolved file could check by hand -----------------

def _secret_names(env: dict[str, Any]) -> set[str]:
    return {k for k in env if re.search(r"PASSWORD|SECRET|TOKEN|WEBHOOK", k)}


def test_every_published_port_binds_the_publish_address_which_defaults_to_loopback(resolved: dict[str, Any]) -> None:
    published = 0
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            host_ip = port.split(":")[0] if isinstance(port, str) else port.get("host_ip")
            assert host_ip == "127.0.0.1", f"{name} publishes {port}"
            published += 1
    assert published == 4      # mosquitto 8883, kafka 29092, postgres 5433, grafana 3000
    for port in re.findall(r"(?m)^\s+- \"(.*:\d+:\d+)\"", (ROOT / "compose.yaml").read_text()):
        assert port.startswith("${APT_ENERGY_PUBLISH_ADDRESS:-127.0.0.1}:"), port


def test_no_password_on_a_command_line_or_in_a_healthcheck(resolved: dict[str, Any]) -> None:
    secrets = {v for k, v in example_env().items() if _secret_names({k: v})}
    for name, service in resolved["services"].items():
        argv = [*service.get("command", []), *service.get("entrypoint", []),
                *service.get("healthcheck", {}).get("test", [])]
        text = " ".join(str(a) for a in argv)
        assert not re.search(r"(^|\s)(-P|-b|--password\S*|-pw)(\s|$)", text), f"{name}: {text}"
        assert not re.search(r"PASSWORD|SECRET|TOKEN", text), f"{name} passes a secret on a command line"
        assert not any(value in text for value in secrets), name


def test_kafka_clients_authenticate_and_mqtt_clients_use_tls(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name in ("setup", "init", "spark", "bridge"):
        env = services[name]["environment"]
        assert env["APT_ENERGY_KAFKA_SECURITY_PROTOCOL"] in ("SASL_PLAINTEXT", "SASL_SSL"), name
        assert env["APT_ENERGY_KAFKA_BOOTSTRAP"] == "kafka:9092", name
    for name in ("bridge", "edge"):
        env = services[name]["environment"]
        assert (env["APT_ENERGY_MQTT_TLS"], env["APT_ENERGY_MQTT_PORT"]) == ("true", "8883"), name
        assert env["APT_ENERGY_MQTT_CA_FILE"] == "/etc/apt-energy/ca/ca.crt"
        assert "mqtt-ca:/etc/apt-energy/ca:ro" in services[name]["volumes"], name
        assert "APT_ENERGY_MQTT_USERNAME" not in env   # no shared login: identities per gateway / role
    assert "PLAINTEXT" not in " ".join(str(v) for s in services.values() for v in s.get("environment", {}).values()
                                       if v not in ("SASL_PLAINTEXT",))
    conf = (ROOT / "config" / "mosquitto" / "mosquitto.conf").read_text()
    assert re.findall(r"(?m)^listener .*$", conf) == ["listener 8883"]   # TLS only: no plain listener at all
    assert "allow_anonymous false" in conf and "certfile" in conf


def _uses(service: str, settings: config.Settings) -> list[str]:
    """The secrets each project service's command reads, through the functions that command calls."""
    from apt_energy.core.kafka import KafkaClient
    from apt_energy.core.mqtt import MqttLogin
    from apt_energy.database.connection import conninfo

    s = settings.secrets
    if service == "edge":
        first = settings.complex.households()[0].device_id
        return [MqttLogin.from_settings(settings, "device", device_id=first).password.reveal()]
    if service == "bridge":
        return [MqttLogin.from_settings(settings, "bridge").password.reveal(),
                KafkaClient.from_settings(settings, "bridge").password.reveal()]
    if service == "spark":   # the stream job (Kafka source as apt-spark, the writer's sink) and the notifier
        assert "password=" in conninfo(settings, role="writer")
        return [KafkaClient.from_settings(settings, "spark").password.reveal(), s.db_password.reveal()]
    if service == "init":    # stack init: provision as the superuser, migrate as the owner, ensure_principals
        kafka = [KafkaClient.from_settings(settings, r).password.reveal() for r in ("admin", "bridge", "spark")]  # type: ignore[arg-type]
        return [os.environ.get("APT_ENERGY_DB_ADMIN_PASSWORD", ""), s.db_owner_password.reveal(),
                s.db_password.reveal(), s.db_reader_password.reveal(), *kafka]
    raise AssertionError(service)


@pytest.mark.parametrize("service", ["edge", "bridge", "spark", "init", "setup"])
def test_each_project_service_gets_exactly_the_secrets_its_command_reads(
        resolved: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from apt_energy.core.errors import AptEnergyError
    from apt_energy.stack.compose import COMPOSE_SECRETS, check_secrets

    env = {k: str(v) for k, v in resolved["services"][service]["environment"].items()}
    given = _secret_names(env)
    for name in given:
        monkeypatch.delenv(name, raising=False)

    def reads(environ: dict[str, str]) -> bool:
        """Whether everything the command reads is there."""
        with monkeypatch.context() as m:
            for k, v in environ.items():
                m.setenv(k, v)
            try:
                if service == "setup":   # checks every secret before anything starts
                    check_secrets(environ)
                    return True
                return all(_uses(service, config.load(environ=environ, dotenv=None)))
            except AptEnergyError:
                return False

    assert reads(env), f"{service} lacks a secret it reads"
    # Slack is optional (a bot token or a webhook): the notifier reads whichever is set (alerts/slack.py).
    optional = {"SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL"} if service == "spark" else set()
    slack = (ROOT / "alerts" / "slack.py").read_text()
    assert "slack_bot_token" in slack and "slack_webhook_url" in slack
    for name in given - optional:   # and each one it gets is needed
        assert not reads({k: v for k, v in env.items() if k != name}), f"{service} gets {name} but never reads it"
    if service == "setup":
        assert given == set(COMPOSE_SECRETS)


def test_servers_get_only_their_own_secrets(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert _secret_names(services["postgres"]["environment"]) == {"POSTGRES_PASSWORD"}
    assert _secret_names(services["grafana"]["environment"]) == {"GF_SECURITY_ADMIN_PASSWORD",
                                                                 "APT_ENERGY_DB_READER_PASSWORD"}
    assert not _secret_names(services["mosquitto"].get("environment", {}))   # reads its identity file
    assert not _secret_names(services["kafka"].get("environment", {}))       # reads its properties file
    # the CA's private key is in a volume only setup mounts
    assert [n for n, s in services.items() if any(str(v).startswith("pki:") for v in s.get("volumes", []))] == ["setup"]
