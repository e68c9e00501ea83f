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

from apt_energy import config
from apt_energy.cli import build_parser

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_GO = "v2.16.2"
SCHEMA_URL = f"https://proxy.golang.org/github.com/compose-spec/compose-go/v2/@v/{COMPOSE_GO}.zip"
PROJECT_IMAGE = "apt-energy:local"


def environment_without(*prefixes: str) -> dict[str, str]:
    """This process's environment minus the variables compose would otherwise take from it."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def example_env() -> dict[str, str]:
    """.env.example with every value filled in, as a user's .env would be."""
    env = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = value or f"test-{name.lower()}"
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
    assert set(services) == {"mosquitto", "kafka-volume", "kafka", "postgres", "init", "spark", "bridge", "edge",
                             "grafana"}
    for name in ("mosquitto", "kafka", "postgres", "bridge", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        for dep, cond in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in ("init", "kafka-volume") else "service_healthy"
            assert cond["condition"] == expected, f"{name} → {dep}"
    assert set(services["edge"]["depends_on"]) == {"bridge"}   # devices publish once the bridge subscribed
    assert {"init", "kafka", "postgres"} <= set(services["spark"]["depends_on"])


def test_state_lives_in_named_volumes(resolved: dict[str, Any]) -> None:
    assert set(resolved["volumes"]) == {"mosquitto-data", "kafka-data", "postgres-data", "spark-checkpoints",
                                        "edge-state", "grafana-data"}
    spark = resolved["services"]["spark"]
    checkpoint = "/var/lib/apt-energy/spark/checkpoints"   # the image's APT_ENERGY_SPARK_CHECKPOINT_DIR
    assert any(checkpoint.startswith(v.split(":")[1]) for v in spark["volumes"])
    assert checkpoint in (ROOT / "Dockerfile").read_text()


def test_the_images_entry_point_is_the_projects_console_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry == ["apt-energy"] and "apt-energy" in scripts
    for source in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.M):
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_every_project_service_command_parses_with_the_entry_point(
        resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    project = {n: s for n, s in resolved["services"].items() if s.get("image") == PROJECT_IMAGE}
    assert set(project) == {"init", "spark", "bridge", "edge"}
    for name, service in project.items():
        with monkeypatch.context() as m:
            for key, value in service.get("environment", {}).items():
                m.setenv(key, str(value))
            args = build_parser().parse_args(service["command"])   # argparse exits (fails the test) if not
            assert args.func is not None, name
            if name == "edge":
                assert args.shard == "auto" and args.interval == 15 * 60 and args.speed == 1


def test_mqtt_clients_log_in_as_the_users_the_acl_names(resolved: dict[str, Any]) -> None:
    acl = (ROOT / "config" / "mosquitto" / "acl").read_text()
    users = set(re.findall(r"^user (\w+)$", acl, re.M))
    assert users == {"edge", "bridge", "operator"}
    services = resolved["services"]
    assert services["edge"]["environment"]["APT_ENERGY_MQTT_USERNAME"] == "edge"
    assert services["bridge"]["environment"]["APT_ENERGY_MQTT_USERNAME"] == "bridge"
    assert "operator" in services["mosquitto"]["healthcheck"]["test"][1]


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
                 "apt_energy/edge/fleet.py", "apt_energy/config/mosquitto/acl"):
        assert path in names
