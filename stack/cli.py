"""``apt-energy stack up|down|status|fetch``: the native stack on this machine; ``stack init``: prepare
servers started elsewhere (docker compose, managed)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os

from apt_energy.config import PROJECT_ROOT, Settings
from apt_energy.config.settings import refuse_example_secrets
from apt_energy.core.cliutil import print_json
from apt_energy.core.errors import ServiceError
from apt_energy.stack.compose import check_secrets
from apt_energy.stack.compose import setup as compose_setup
from apt_energy.stack.kafka_cluster import running_brokers
from apt_energy.stack.native import NativeStack
from apt_energy.stack.prepare import prepare
from apt_energy.stack.secrets import GENERATED, ensure_dotenv

from apt_energy import config

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "stack", help="start, stop or inspect the native stack (Mosquitto, PostgreSQL, Kafka)",
        description="Real services on 127.0.0.1 with data, logs and pid files under the run dir "
                    "(stack.run_dir, env APT_ENERGY_STACK_RUN_DIR; default .run/). Ports: "
                    "APT_ENERGY_MQTT_PORT, APT_ENERGY_POSTGRES_PORT, APT_ENERGY_KAFKA_BOOTSTRAP, "
                    "APT_ENERGY_STACK_KAFKA_CONTROLLER_PORT. Jars are cached in stack.cache_dir "
                    "(env APT_ENERGY_STACK_CACHE_DIR).")
    p.add_argument("action", choices=["up", "down", "status", "fetch", "init", "secrets", "compose-setup"],
                   help="up: start (idempotent) and migrate; down: stop what up started; "
                        "secrets: write a random value into .env (0600) for every secret that has none or still "
                        "has its .env.example placeholder (compose reads the same file); "
                        "status: health of each service; fetch: download the Maven jars only; "
                        "init: for servers you run yourself (compose does this): create the roles and database "
                        "as the superuser postgres (APT_ENERGY_DB_ADMIN_PASSWORD), migrate, seed, create topics; "
                        "compose-setup: docker compose's setup service (stack/compose.py): refuse example "
                        "secrets, write the broker's TLS files and identities and Kafka's config")
    p.add_argument("--kafka-brokers", type=int, default=None, metavar="N",
                   help="up: run Kafka as a KRaft cluster of N nodes (3: replication factor 3, min.insync.replicas "
                        "2); node i listens on the bootstrap and controller ports + 2·(i-1) (default "
                        "stack.kafka_brokers, env APT_ENERGY_STACK_KAFKA_BROKERS, 1). Set the same in the "
                        "environment of the clients so they bootstrap from every node. status and down follow "
                        "what runs")
    p.add_argument("--json", action="store_true",
                   help="up/down/status: print the services as a JSON list (name, running, healthy, endpoint, pid)")
    p.set_defaults(func=run)


def with_brokers(settings: Settings, brokers: int) -> Settings:
    return dataclasses.replace(settings, stack=dataclasses.replace(settings.stack, kafka_brokers=brokers))


def run(args: argparse.Namespace) -> int:
    if args.action == "secrets":
        if not ensure_dotenv():  # what it generates, it logs (as it does for `stack up`)
            print(f"{PROJECT_ROOT / '.env'}: every secret is set")
        return 0
    if args.action == "up":
        ensure_dotenv()
    if args.action == "compose-setup":
        check_secrets(os.environ)  # before loading the settings: one line naming the variable
        compose_setup(config.load(), env=os.environ)
        print("compose setup: broker TLS and identities, Kafka config written")
        return 0
    if args.action == "init":
        refuse_example_secrets(os.environ, GENERATED)
        applied = prepare(config.load())
        print(f"ready: roles, database, migrations ({', '.join(f'{v:04d}' for v in applied) or 'up to date'}), "
              "seed and Kafka topics")
        return 0
    settings = config.load()
    if args.kafka_brokers is not None:
        settings = with_brokers(settings, args.kafka_brokers)
    running = running_brokers(settings.run_dir)
    if running is not None and running != settings.stack.kafka_brokers:
        if args.action == "up":
            raise ServiceError(f"a Kafka of {running} broker(s) runs from {settings.run_dir}; stop it first "
                               "(`apt-energy stack down`)", service="kafka")
        settings = with_brokers(settings, running)
    stack = NativeStack.from_settings(settings)
    if args.action == "fetch":
        stack.fetch()
        return 0
    if args.action == "up":
        stack.up()
    elif args.action == "down":
        stack.down()
    statuses = stack.status()
    if args.json:
        print_json([{**dataclasses.asdict(s), "state": s.state} for s in statuses])
    else:
        width = max(len(s.name) for s in statuses)
        for s in statuses:
            pid = f"pid {s.pid}" if s.pid else ""
            print(f"{s.name:<{width}}  {s.state:<18} {s.endpoint:<40} {pid}")
    if args.action == "status":
        return 0 if all(s.healthy for s in statuses) else 3
    if args.action == "up" and not all(s.healthy for s in statuses):
        return 1
    return 0
