# apt-energy — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: help bootstrap demo test test-unit chaos scale-test soak compose-test lock check up down status bench clean

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

bootstrap: ## install system packages (as root), the .venv and the Maven jars; idempotent
	@bash stack/bootstrap.sh

demo: bootstrap ## the whole complex end to end: stack, Spark job, bridge, 840 edge devices, checked summary
	$(VENV)/apt-energy demo $(ARGS)

test: bootstrap ## all tests: unit, integration against the native stack (started if needed), chaos, scale
	$(VENV)/pytest $(ARGS)

test-unit: bootstrap ## unit tests only (no services)
	$(VENV)/pytest -m unit $(ARGS)

chaos: bootstrap ## fault suite: kill -9 bridge/Spark/Kafka, restarts, Slack outage, hostile input → loss table
	$(VENV)/pytest -m chaos -rxX --basetemp=.run/chaos $(ARGS)

scale-test: bootstrap ## 3 Kafka brokers, Spark master + 2 workers, 2 bridges, 2 edge shards; kill -9 a broker and a worker mid-run
	$(VENV)/pytest -m scale -rxX --basetemp=.run/scale $(ARGS)

soak: bootstrap ## 25 min of simulated days through the pipeline, a 4-min Kafka outage, a broker restart → truth check + growth table
	APT_ENERGY_SOAK_MINUTES=$${APT_ENERGY_SOAK_MINUTES:-25} $(VENV)/pytest -m soak -s -rxX --timeout 7200 --basetemp=.run/soak $(ARGS)

compose-test: bootstrap ## compose.yaml for real: podman + docker-compose, --scale edge=3→4, restarts, truth check (~15 min)
	$(VENV)/pytest -m compose -rxX -s --basetemp=.run/compose $(ARGS)

lock: ## re-resolve requirements.lock / requirements-dev.lock from pyproject.toml's ranges
	$(VENV)/python stack/lock.py

check: bootstrap ## ruff + mypy
	$(VENV)/ruff check .
	@bash stack/typecheck.sh

up: bootstrap ## start the native stack (Mosquitto, PostgreSQL, Kafka) and migrate
	$(VENV)/apt-energy stack up

down: ## stop the native stack
	$(VENV)/apt-energy stack down

status: ## health of each native service
	$(VENV)/apt-energy stack status

bench: bootstrap ## one table of every bench figure against its same-run baseline; ARGS="--only edge" for one
	$(VENV)/python -m bench.report $(ARGS)

clean: down ## stop the stack and delete .run/ (data, logs)
	rm -rf .run
