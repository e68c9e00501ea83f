"""The chaos suite's pipeline (one per module, isolated) and the table it prints at the end."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from apt_energy.app.reset import forget_bridge_session
from apt_energy.stack import NativeStack

from tests.chaos.harness import Chaos, Outcome, table
from tests.chaos.slack_outage import AmbiguousSlack
from tests.conftest import create_database, delete_topics, drop_databases, env_for, isolate, topic_maker
from tests.slack_stub import SlackStub

OUTCOMES: list[Outcome] = []


@pytest.fixture(scope="module")
def slack() -> Iterator[tuple[SlackStub, AmbiguousSlack]]:
    stub = SlackStub()
    proxy = AmbiguousSlack(stub)
    yield stub, proxy
    proxy.close()
    stub.close()


@pytest.fixture(scope="module")
def chaos(native_stack: NativeStack, slack: tuple[SlackStub, AmbiguousSlack],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    """Spark job, bridge and notifier under ``apt-energy pipeline`` with a database, topics, MQTT prefix,
    bridge session and Slack of their own; electricity alerts from 10 kWh so a few days raise some."""
    stub, proxy = slack
    topics: list[str] = []
    db = create_database(native_stack)
    settings = isolate(dataclasses.replace(native_stack.settings, postgres=db.postgres),
                       topic_maker(native_stack, topics))
    tmp = tmp_path_factory.mktemp("chaos")
    env = {**env_for(settings), "APT_ENERGY_LOG_LEVEL": "INFO",
           "APT_ENERGY_SPARK_CHECKPOINT_DIR": str(tmp / "checkpoints"),
           "SLACK_BOT_TOKEN": "xoxb-chaos", "SLACK_API_BASE_URL": proxy.base_url,
           "APT_ENERGY_RULES_THRESHOLDS_ELECTRICITY_WARNING": "10",
           "APT_ENERGY_RULES_THRESHOLDS_ELECTRICITY_CRITICAL": "100000"}

    def accepted() -> list[dict[str, object]]:
        with stub.lock:
            return list(stub.messages)

    *households, canary = settings.complex.households()
    c = Chaos(settings, env, tmp / "pipeline", accepted, households=households)
    try:
        c.up()
        c.wait_ready(canary)
        yield c
    finally:
        c.down()
        forget_bridge_session(settings)  # the broker would keep queueing for it
        drop_databases(native_stack, [db.postgres.database])
        delete_topics(native_stack, topics)


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    return tmp_path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if OUTCOMES:
        terminalreporter.section("chaos: readings lost / doubled / quarantined, Slack posts per alert")
        terminalreporter.write_line(table(OUTCOMES))
