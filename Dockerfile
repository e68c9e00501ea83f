# The project image: every pipeline command (`apt-energy ...`) with Java for Spark and the Spark Kafka
# connector jars baked in. Used by compose.yaml's setup, init, bridge, spark and edge services (setup runs
# as root to hand the servers their files; everything else runs as the unprivileged user `apt`).
#   docker build -t apt-energy:local .

# --- build: install the package into a venv and fetch the connector jars with Maven --------------------
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends maven openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 \
    APT_ENERGY_STACK_CACHE_DIR=/opt/apt-energy/cache
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY apt_energy ./apt_energy
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
RUN pip install . \
 && python -c "from pathlib import Path; from apt_energy.stack.jars import spark_kafka_jars; \
print(len(spark_kafka_jars(Path('/opt/apt-energy/cache'))), 'connector jars')"

# --- runtime: the venv, the jars and a JRE; no compilers, no Maven ---------------------------------------
FROM python:3.11-slim-bookworm
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
