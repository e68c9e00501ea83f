"""Fetch the Kafka broker and the Spark Kafka connector jars from Maven Central into the cache.

``mvn dependency:copy-dependencies`` over the two POMs beside this module; each jar set lands in its
own folder with a stamp naming the POM digest and version, so a second run costs nothing and a POM
change refetches.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
from pathlib import Path

from apt_energy.core.errors import ServiceError
from apt_energy.stack.process import require_binary

logger = logging.getLogger(__name__)

MAVEN_DIR = Path(__file__).resolve().parent / "maven"
KAFKA_POM = MAVEN_DIR / "kafka.pom.xml"
SPARK_POM = MAVEN_DIR / "spark-kafka.pom.xml"


def pyspark_version() -> str:
    import pyspark  # imported late: the stack's other commands do not need Spark

    return pyspark.__version__


def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", KAFKA_POM.read_text())
    if not match:
        raise ServiceError(f"{KAFKA_POM}: no <kafka.version> property")
    return match.group(1)


def kafka_jars(cache_dir: Path) -> Path:
    """The folder holding the Kafka broker's classpath, fetched if missing."""
    return _fetch(KAFKA_POM, cache_dir / "jars" / f"kafka-{kafka_version()}", {})


def jars_for(pom: Path, dest: Path, props: dict[str, str]) -> Path:
    """The folder holding ``pom``'s runtime jars (``props`` as Maven properties), fetched if missing or if
    the POM changed (e.g. the compose test's Kafka stand-in: tests/compose/standins/kafka/tools.pom.xml)."""
    return _fetch(pom, dest, props)


def spark_kafka_jars(cache_dir: Path) -> list[Path]:
    """Connector jars to pass as ``spark.jars``: the connector and what pyspark does not already ship.

    The connector's POM also pulls Hadoop, Scala and slf4j, which the pyspark wheel carries in its own
    (newer) versions; putting both on the classpath invites version clashes, so those are left out.
    """
    version = pyspark_version()
    folder = _fetch(SPARK_POM, cache_dir / "jars" / f"spark-kafka-{version}", {"spark.version": version})
    import pyspark

    shipped = {_artifact(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    jars = sorted(p for p in folder.glob("*.jar") if _artifact(p.name) not in shipped)
    if not any(p.name.startswith("spark-sql-kafka-0-10_2.13") for p in jars):
        raise ServiceError(f"{folder}: spark-sql-kafka-0-10_2.13 missing; delete the folder and rerun "
                         "`apt-energy stack fetch`")
    return jars


def _artifact(jar_name: str) -> str:
    """``kafka-clients-3.9.2.jar`` → ``kafka-clients``."""
    return re.sub(r"-\d[\w.+-]*\.jar$", "", jar_name)


def _fetch(pom: Path, dest: Path, props: dict[str, str]) -> Path:
    digest = hashlib.sha256(pom.read_bytes() + repr(sorted(props.items())).encode()).hexdigest()[:16]
    stamp = dest / ".complete"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return dest
    mvn = require_binary("mvn", package="maven")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    argv = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}", *(f"-D{k}={v}" for k, v in props.items())]
    logger.info("fetching jars from Maven Central pom=%s dest=%s", pom.name, dest)
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if "ERROR" in ln]
        raise ServiceError(f"mvn could not fetch {pom.name}: {lines[0] if lines else 'exit ' + str(result.returncode)}"
                         " (is Maven Central reachable?)")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    stamp.write_text(digest + "\n")
    return dest
