# syntax=docker/dockerfile:1
# The project image: every pipeline command (`apt-energy ...`) with Java for Spark and the Spark Kafka
# connector jars baked in. Used by compose.yaml's setup, init, bridge, spark and edge services (setup runs
# as root to hand the servers their files; everything else runs as the unprivileged user `apt`).
#   docker build -t apt-energy:local .
# Behind a TLS-inspecting proxy (an office, this project's CI), hand the build the host's CA bundle; only
# the build stage sees it (pip and Maven), nothing of it lands in an image layer:
#   docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt -t apt-energy:local .
# PYTHON_IMAGE: the base of both stages (make compose-test passes a stand-in built from Debian's python3).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: install the locked dependencies into a venv, fetch the connector jars with Maven ------------
FROM ${PYTHON_IMAGE} AS build
# The proxy's CA goes into the system store before Java is installed, so Debian's ca-certificates-java puts
# it into Java's trust store too (Maven); pip reads the same store through PIP_CERT.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then \
        mkdir -p /usr/local/share/ca-certificates/build \
        && awk '/BEGIN CERTIFICATE/ {n++} n {print > ("/usr/local/share/ca-certificates/build/" n ".crt")}' \
               /run/secrets/ca_bundle \
        && update-ca-certificates >/dev/null; \
    fi \
 && apt-get update \
 && apt-get install -y --no-install-recommends maven openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    APT_ENERGY_STACK_CACHE_DIR=/opt/apt-energy/cache
RUN python -m venv /opt/venv
WORKDIR /src
# Layers from the slowest-changing down: a change to the code reinstalls neither the dependencies (the
# lock alone decides them) nor the jars (Maven's local repository is filled from the POM alone).
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY stack/maven/spark-kafka.pom.xml ./warm/
RUN mvn -q -B -f warm/spark-kafka.pom.xml dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory=/tmp/warm -Dspark.version="$(python -c 'import pyspark; print(pyspark.__version__)')" \
 && rm -rf /tmp/warm warm
COPY pyproject.toml README.md ./
COPY apt_energy ./apt_energy
COPY core ./core
COPY app ./app
COPY config ./config
COPY stack ./stack
COPY database ./database
COPY edge ./edge
COPY bridge ./bridge
COPY spark ./spark
COPY dashboards ./dashboards
COPY alerts ./alerts
COPY billing ./billing
COPY forecast ./forecast
COPY rules ./rules
# --no-deps: everything came from the lock above. `python -P`: the check imports the installed package, not
# /src's folders (in /src, apt_energy/ would shadow it: the other folders are apt_energy.* only once installed).
RUN pip install --no-deps . \
 && python -P -c "from pathlib import Path; from apt_energy.stack.jars import spark_kafka_jars; \
print(len(spark_kafka_jars(Path('/opt/apt-energy/cache'))), 'connector jars')"

# --- runtime: the venv, the jars and a JRE; no compilers, no Maven ---------------------------------------
FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless openssl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home apt \
 && mkdir -p /var/lib/apt-energy/spark /var/lib/apt-energy/edge && chown -R apt /var/lib/apt-energy
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/apt-energy/cache /opt/apt-energy/cache
# Named volumes mounted on /var/lib/apt-energy/{spark,edge} start with the ownership set above.
# Paths are absolute here: the package lives in site-packages, not in a checkout.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    APT_ENERGY_STACK_CACHE_DIR=/opt/apt-energy/cache \
    APT_ENERGY_STACK_RUN_DIR=/var/lib/apt-energy \
    APT_ENERGY_SPARK_CHECKPOINT_DIR=/var/lib/apt-energy/spark/checkpoints
USER apt
WORKDIR /var/lib/apt-energy
ENTRYPOINT ["apt-energy"]
CMD ["--help"]
