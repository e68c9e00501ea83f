"""compose.yaml for real, on a machine with podman and no registry: images, the compose run, the checks.

- **Engine**: podman (Debian's), set up by ``stack/containers.sh`` (runc, the project's containers.conf, a
  Docker-API socket). Compose: Debian's ``docker-compose`` 1.29 over that socket (README: why not
  podman-compose).
- **Images**: a Debian bookworm base (mmdebstrap, cached), stand-ins for the official server images
  (``standins/*/Containerfile``) and the project image from the real ``Dockerfile``; podman's layer cache
  makes a second build cost seconds.
- **Healthchecks**: podman runs them from systemd timers; without systemd (CI containers, this machine)
  nothing runs them, so :class:`HealthTicker` calls ``podman healthcheck run`` for every running container
  that has one, at its interval. Docker's daemon does this itself.
- **Truth**: the edge replicas' ledgers (in the ``edge-state`` volume) against PostgreSQL's totals, the demo's
  check (:mod:`apt_energy.app.truth`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from apt_energy.app import truth
from apt_energy.config import Settings
from apt_energy.stack.jars import jars_for, kafka_jars, kafka_version
from apt_energy.stack.secrets import GENERATED

from apt_energy import config

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
COMPOSE_FILES = (ROOT / "compose.yaml", HERE / "compose.test.yaml")
PROJECT = "apt-energy-compose-test"       # no digits: edge/shards.py reads the replica number from names
PROJECT_IMAGE = "apt-energy:local"
PYTHON_STANDIN = "localhost/apt-energy-standin/python:3.11-bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# name -> (tag, build context folder); kafka's context gets the jars (see kafka_context)
STANDIN_IMAGES = {"python": PYTHON_STANDIN,
                  "mosquitto": "localhost/apt-energy-standin/mosquitto:2.0.11",
                  "postgres": "localhost/apt-energy-standin/postgres:15",
                  "kafka": "localhost/apt-energy-standin/kafka:4.1.1"}


def containers_env() -> dict[str, str]:
    """CONTAINERS_CONF and DOCKER_HOST as stack/containers.sh sets them."""
    out = subprocess.run(["bash", str(ROOT / "stack" / "containers.sh"), "env"], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    return dict(re.findall(r"^export (\w+)=(.*)$", out, re.M))


def run(argv: list[str], *, env: Mapping[str, str] | None = None, check: bool = True, timeout: float = 900,
        quiet: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:4])} … failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    if not quiet:
        logger.debug("%s -> %d", " ".join(argv), result.returncode)
    return result


@dataclass
class Phases:
    """Wall time per phase, printed as the run's table."""

    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def timed(self, name: str) -> _Timer:
        return _Timer(self, name)

    def table(self) -> str:
        total = time.monotonic() - self.started
        rows = [f"  {name:<34} {s:7.1f} s" for name, s in self.seconds.items()]
        return "\n".join(["compose test phases:", *rows, f"  {'total':<34} {total:7.1f} s"])


class _Timer:
    def __init__(self, phases: Phases, name: str) -> None:
        self.phases, self.name = phases, name

    def __enter__(self) -> None:
        self.began = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.phases.seconds[self.name] = self.phases.seconds.get(self.name, 0.0) + time.monotonic() - self.began


# --- images -----------------------------------------------------------------------------------------------

def prepare_engine() -> dict[str, str]:
    """Packages, the base image and the API socket (stack/containers.sh); the environment podman and
    docker-compose need."""
    for step in ("install", "base", "socket"):
        run(["bash", str(ROOT / "stack" / "containers.sh"), step], timeout=900)
    return containers_env()


def kafka_context(work: Path, cache_dir: Path) -> Path:
    """The Kafka stand-in's build context: its files plus the jars (the native broker's + kafka-tools)."""
    context = work / "kafka-context"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(STANDINS / "kafka", context)
    libs = context / "libs"
    libs.mkdir()
    tools = jars_for(STANDINS / "kafka" / "tools.pom.xml", cache_dir / "jars" / f"kafka-tools-{kafka_version()}",
                     {"kafka.version": kafka_version()})
    for folder in (kafka_jars(cache_dir), tools):
        for jar in folder.glob("*.jar"):
            os.link(jar, libs / jar.name) if not (libs / jar.name).exists() else None
    return context


def build_images(env: Mapping[str, str], work: Path, settings: Settings) -> None:
    """The stand-ins, then the project image from the real Dockerfile on the Python stand-in."""
    for name, tag in STANDIN_IMAGES.items():
        context = kafka_context(work, settings.cache_dir) if name == "kafka" else STANDINS / name
        run(["podman", "build", "-q", "-f", str(context / "Containerfile"), "-t", tag, str(context)], env=env)
    secret = ["--secret", f"id=ca_bundle,src={CA_BUNDLE}"] if CA_BUNDLE.exists() else []
    run(["podman", "build", "-q", *secret, "--build-arg", f"PYTHON_IMAGE={PYTHON_STANDIN}",
         "-t", PROJECT_IMAGE, str(ROOT)], env=env, timeout=1500)


# --- healthchecks without systemd -------------------------------------------------------------------------

class HealthTicker(threading.Thread):
    """``podman healthcheck run`` for each running container with a healthcheck, at its interval."""

    def __init__(self, env: Mapping[str, str], *, project: str = PROJECT, default_interval_s: float = 5.0) -> None:
        super().__init__(name="health-ticker", daemon=True)
        self.env, self.project, self.default_interval_s = dict(env), project, default_interval_s
        self.stopping = threading.Event()
        self.due: dict[str, float] = {}

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            try:
                self.tick()
            except (subprocess.SubprocessError, OSError, ValueError) as exc:
                logger.debug("health tick: %s", exc)

    def tick(self) -> None:
        ids = run(["podman", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}"],
                  env=self.env, check=False, quiet=True).stdout.split()
        now = time.monotonic()
        for cid in ids:
            if self.due.get(cid, 0.0) > now:
                continue
            inspect = run(["podman", "inspect", "--format", "{{json .Config.Healthcheck}}", cid], env=self.env,
                          check=False, quiet=True).stdout.strip()
            hc = json.loads(inspect) if inspect.startswith("{") else None
            if not hc or not hc.get("Test") or hc["Test"][0] == "NONE":
                self.due[cid] = now + 3600
                continue
            interval_s = (hc.get("Interval") or 0) / 1e9 or self.default_interval_s
            # podman applies the retries and the start period itself
            subprocess.run(["podman", "healthcheck", "run", cid], env={**os.environ, **self.env},
                           capture_output=True, timeout=60, check=False)
            self.due[cid] = time.monotonic() + min(interval_s, 10.0)

    def stop(self) -> None:
        self.stopping.set()


# --- the compose project ----------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ComposeProject:
    """One compose project: its env file (random secrets, free host ports, the test workload)."""

    env: dict[str, str]          # podman / docker-compose
    work: Path
    households: int = 24
    interval: str = "2s"
    values: dict[str, str] = field(default_factory=dict)
    anonymous: set[str] = field(default_factory=set)    # anonymous volumes of this project's containers

    def __post_init__(self) -> None:
        self.values = {name: secrets.token_urlsafe(18) for name in GENERATED}
        self.values |= {"APT_ENERGY_COMPOSE_MQTT_PORT": str(free_port()),
                        "APT_ENERGY_COMPOSE_KAFKA_PORT": str(free_port()),
                        "APT_ENERGY_COMPOSE_POSTGRES_PORT": str(free_port()),
                        "APT_ENERGY_COMPOSE_GRAFANA_PORT": str(free_port()),
                        "EDGE_HOUSEHOLDS": str(self.households), "EDGE_INTERVAL": self.interval,
                        "SPARK_MASTER": "local[2]"}
        self.env_file = self.work / "compose.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.values.items()))
        self.env_file.chmod(0o600)

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        files = [a for f in COMPOSE_FILES for a in ("-f", str(f))]
        # the worktree's .env (the native stack's ports) and this process's APT_ENERGY_* must not leak in
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("APT_ENERGY_", "EDGE_", "SPARK_",
                                                                           "GRAFANA_", "SLACK_"))}
        result = subprocess.run(["docker-compose", "--no-ansi", "-p", PROJECT, *files, "--project-directory",
                                 str(ROOT), "--env-file", str(self.env_file), *args],
                                env={**clean, **self.env, "COMPOSE_HTTP_TIMEOUT": "300"}, capture_output=True,
                                text=True, timeout=timeout, cwd=ROOT, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def settings(self) -> Settings:
        """The pipeline's settings as a host client of this project's published PostgreSQL."""
        environ = {**self.values, "APT_ENERGY_POSTGRES_HOST": "127.0.0.1",
                   "APT_ENERGY_POSTGRES_PORT": self.values["APT_ENERGY_COMPOSE_POSTGRES_PORT"]}
        return config.load(environ=environ, dotenv=None)

    # --- state ---------------------------------------------------------------------------------------------

    def containers(self, service: str | None = None, *, all_states: bool = False) -> list[dict[str, Any]]:
        argv = ["podman", "ps", "--format", "json", "--filter", f"label=com.docker.compose.project={PROJECT}"]
        if service:
            argv += ["--filter", f"label=com.docker.compose.service={service}"]
        if all_states:
            argv.append("-a")
        return list(json.loads(run(argv, env=self.env, quiet=True).stdout or "[]"))

    def health(self) -> dict[str, str]:
        """Container name -> state (health status where it has a healthcheck)."""
        out = {}
        for c in self.containers(all_states=True):
            name = c["Names"][0]
            status = run(["podman", "inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", name],
                         env=self.env, quiet=True, check=False).stdout.split()
            out[name] = " ".join(status) if status else "?"
        return out

    def wait_healthy(self, services: Iterable[str], *, timeout_s: float = 420) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        wanted = set(services)
        while True:
            states = self.health()
            pending = {n: s for n, s in states.items() if (_service(n) in wanted and not s.endswith("healthy"))
                       or s.endswith("unhealthy")}
            seen = {_service(n) for n in states}
            if not pending and wanted <= seen:
                return states
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy after {timeout_s:.0f}s: {pending or wanted - seen}\n"
                                     + self.compose("logs", "--tail", "40", check=False).stdout[-6000:])
            time.sleep(3)

    def volume_path(self, volume: str) -> Path:
        out = run(["podman", "volume", "inspect", "--format", "{{.Mountpoint}}", f"{PROJECT}_{volume}"],
                  env=self.env, quiet=True).stdout.strip()
        return Path(out)

    def volume_created(self, volume: str) -> str:
        return run(["podman", "volume", "inspect", "--format", "{{.CreatedAt}}", f"{PROJECT}_{volume}"],
                   env=self.env, quiet=True).stdout.strip()

    def secret_fingerprints(self) -> dict[str, str]:
        """sha256 of every file that holds a key or an identity, and each secret volume's creation time."""
        out = {}
        for volume in ("pki", "mqtt-ca", "mosquitto-secure", "kafka-secure", "postgres-data", "kafka-data"):
            out[f"volume {volume} created"] = self.volume_created(volume)
        files = [("pki", p) for p in sorted((self.volume_path("pki")).rglob("*")) if p.is_file()]
        files += [("mosquitto-secure", self.volume_path("mosquitto-secure") / "tls" / n)
                  for n in ("server.key", "server.crt", "ca.crt")]
        files += [("kafka-data", self.volume_path("kafka-data") / "meta.properties"),
                  ("postgres-data", self.volume_path("postgres-data") / "global" / "pg_control")]
        for volume, path in files:
            data = path.read_bytes()
            if path.name == "pg_control":
                data = data[:8]      # the system identifier: a new initdb would change it
            out[f"{volume}:{path.name}"] = hashlib.sha256(data).hexdigest()[:16]
        return out

    def ledger(self) -> dict[truth.Key, truth.Total]:
        """Every replica's ledger, summed: a replica's keys may reappear in another after a re-split."""
        total: dict[truth.Key, truth.Total] = {}
        for path in sorted(self.volume_path("edge-state").glob("ledger-*.json")):
            for key, t in truth.read_ledger(path).items():
                old = total.get(key, truth.Total(Decimal(0), 0))
                total[key] = truth.Total(old.amount + t.amount, old.readings + t.readings)
        return total

    def shares(self) -> dict[str, tuple[int, int, int]]:
        """Edge container -> (shard i, of n, devices) from its latest start's log line."""
        out = {}
        for c in self.containers("edge"):
            name = c["Names"][0]
            logs = run(["podman", "logs", name], env=self.env, quiet=True, check=False)
            found = re.findall(r"edge fleet devices=(\d+) shard=(\d+)/(\d+)", logs.stdout + logs.stderr)
            if found:
                devices, i, n = found[-1]
                out[name] = (int(i), int(n), int(devices))
        return out

    def down(self, *, volumes: bool) -> None:
        """``down`` (``-v``: named volumes too, and the anonymous ones the images declare, e.g. Mosquitto's
        /mosquitto/log, which docker-compose 1.29 carries over to a re-created container and leaves behind)."""
        # Remembered across a `down` without -v too: its containers' anonymous volumes outlive them.
        for c in self.containers(all_states=True):
            mounts = run(["podman", "inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", c["Id"]],
                         env=self.env, quiet=True, check=False).stdout.split()
            self.anonymous |= {m for m in mounts if re.fullmatch(r"[0-9a-f]{64}", m)}
        self.compose("down", "--remove-orphans", *(["-v"] if volumes else []), "--timeout", "30", timeout=300,
                     check=False)
        if volumes and self.anonymous:
            run(["podman", "volume", "rm", "-f", *sorted(self.anonymous)], env=self.env, quiet=True, check=False)
            self.anonymous.clear()

    def leftovers(self) -> list[str]:
        """Volumes and networks of this project still present (the test must leave none)."""
        vols = run(["podman", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
                   env=self.env, quiet=True).stdout.split()
        nets = [n for n in run(["podman", "network", "ls", "--format", "{{.Name}}"], env=self.env,
                               quiet=True).stdout.split() if n.startswith(PROJECT)]
        return vols + nets


def _service(container_name: str) -> str:
    """``apt-energy-compose-test_edge_2`` -> ``edge``."""
    return container_name.removeprefix(PROJECT + "_").rsplit("_", 1)[0]


@dataclass(frozen=True)
class Exactness:
    """The truth check's result, as the report prints it."""

    ledger_readings: int
    stored_readings: int
    differ: int
    unknown: int
    households: int

    @property
    def exact(self) -> bool:
        return self.differ == 0 and self.unknown == 0 and self.ledger_readings == self.stored_readings

    def line(self) -> str:
        return (f"ledger {self.ledger_readings} readings, stored {self.stored_readings}, households "
                f"{self.households}, keys differing {self.differ}, unknown {self.unknown}")


def exactness(project: ComposeProject, *, wait_s: float = 180) -> Exactness:
    """Wait until PostgreSQL holds what the ledgers say (the stream job is behind for a few batches), then
    compare; a mismatch that stays is the result."""
    settings = project.settings()
    ledger = project.ledger()
    deadline = time.monotonic() + wait_s
    while True:
        result = truth.check(settings, ledger)
        if result.ok or time.monotonic() > deadline:
            break
        time.sleep(3)
    return Exactness(ledger_readings=sum(t.readings for t in ledger.values()),
                     stored_readings=sum(t.readings for t in result.database.values()),
                     differ=len(result.differ), unknown=len(result.unknown),
                     households=len({k[0] for k in result.database}))


def seq_continuity(settings: Settings) -> tuple[int, int]:
    """(device-meters, those whose stored seqs are one life counting 0, 1, 2, … without a gap): a replica
    that took over a household after a re-split continued its seqs from the shared state."""
    from apt_energy.database import connect

    with connect(settings, role="reader") as conn:
        rows = conn.execute("""SELECT count(*), count(*) FILTER (WHERE lives = 1 AND low = 0 AND high + 1 = n)
                               FROM (SELECT device_id, meter, count(DISTINCT life) AS lives, min(seq) AS low,
                                            max(seq) AS high, count(*) AS n
                                     FROM meter_readings GROUP BY device_id, meter) s""").fetchone()
    assert rows is not None
    return int(rows[0]), int(rows[1])
