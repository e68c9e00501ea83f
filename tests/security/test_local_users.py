"""Attempts by another, unprivileged local user on what the native stack keeps on disk: each refused.
The user is made for this module (``useradd``, as root) and removed after."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from apt_energy.spark.job import private_checkpoints
from apt_energy.stack import NativeStack

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="making a second local user needs root")]


@pytest.fixture(scope="module")
def local_user() -> Iterator[str]:
    """A fresh unprivileged user with no home and no shell, deleted afterwards."""
    name = f"aptprobe{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
                   check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def as_user(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, timeout=30,
                          check=False)


def refused(user: str, path: Path) -> bool:
    """``user`` can neither read ``path`` (a file) nor list it (a directory)."""
    argv = ["ls", str(path)] if path.is_dir() else ["head", "-c", "1", str(path)]
    result = as_user(user, *argv)
    return result.returncode != 0 and "Permission denied" in result.stderr


def test_the_probe_user_reads_what_everyone_may(local_user: str) -> None:
    # the checks below fail for the right reason: this user reads world-readable files
    assert as_user(local_user, "head", "-c", "1", "/etc/os-release").returncode == 0


def _kafka_dir(stack: NativeStack) -> Path:
    return stack.kafka.dir if hasattr(stack.kafka, "node") else stack.kafka.nodes[0].dir  # type: ignore[union-attr]


def test_a_local_user_reads_no_kafka_segment_nor_the_metadata_log(native_stack: NativeStack,
                                                                 local_user: str) -> None:
    data = _kafka_dir(native_stack) / "data"
    readings = sorted(data.glob(f"{native_stack.settings.kafka.readings_topic}-*/*.log"))
    metadata = sorted(data.glob("__cluster_metadata-0/*.log"))  # SCRAM verifiers and ACLs
    assert readings and metadata
    for path in [readings[0], metadata[0], data, _kafka_dir(native_stack) / "server.properties",
                 _kafka_dir(native_stack) / "server.log"]:
        assert refused(local_user, path), path


def test_a_local_user_reads_nothing_of_the_broker_or_the_database(native_stack: NativeStack,
                                                                  local_user: str) -> None:
    run = native_stack.settings.run_dir
    mosquitto, postgres = native_stack.mosquitto.dir, native_stack.postgres.home
    paths = [run, mosquitto / "identities.json", mosquitto / "tls" / "server.key", mosquitto / "data",
             mosquitto / "mosquitto.log", postgres / "postgres.log", postgres / "data" / "PG_VERSION"]
    assert all(p.exists() for p in paths)
    for path in paths:
        assert refused(local_user, path), path


def test_spark_checkpoints_are_private_whatever_the_umask(local_user: str) -> None:
    parent = Path(tempfile.mkdtemp(prefix="apt-ckpt-"))
    try:
        parent.chmod(0o755)  # a parent every user may pass through, like a project checkout
        old = os.umask(0o022)
        try:
            private_checkpoints(parent / "checkpoints")
            offsets = parent / "checkpoints" / "readings" / "offsets"
            offsets.parent.mkdir(parents=True)
            offsets.write_text('{"apt.readings":{"0":42}}')  # as Spark writes it: 0644 under umask 022
        finally:
            os.umask(old)
        assert refused(local_user, offsets)
        assert refused(local_user, parent / "checkpoints")
    finally:
        shutil.rmtree(parent)


def test_the_broker_runs_as_the_packages_unprivileged_user(native_stack: NativeStack) -> None:
    pid = native_stack.mosquitto.status().pid
    assert pid is not None
    uid = Path(f"/proc/{pid}").stat().st_uid
    assert uid == pwd.getpwnam("mosquitto").pw_uid != 0
