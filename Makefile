# agentpersistence — the one entry point. `make help` lists the targets.
SHELL := bash
.DEFAULT_GOAL := help
.SUFFIXES:

CACHE ?= $(HOME)/.cache/agentpersistence
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export AGENTPERSISTENCE_CACHE := $(CACHE)
export PIP_CACHE_DIR := $(CACHE)/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

STAMP := $(VENV)/.installed

.PHONY: help install demo test test-fast test-pythons lint format bench bench-operator testenv cluster cluster-down e2e-kind crds clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-13s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements/dev.txt requirements/constraints.txt client/pyproject.toml sidecar/pyproject.toml operator/pyproject.toml emulator/pyproject.toml
	@echo "==> building $(VENV) (pip cache: $(PIP_CACHE_DIR))"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -r requirements/dev.txt -c requirements/constraints.txt
	@touch $@

install: $(STAMP) ## Build .venv with client, sidecar, operator, emulator and the test tools (editable)

demo: install ## Run an agent interrupted in one process and resumed in another (embedded Valkey + sidecar)
	@$(PY) demo/run.py

lint: install ## ruff (lint + format check) and mypy --strict
	@echo "==> ruff"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@echo "==> mypy --strict"
	@$(VENV)/bin/mypy client/src sidecar/src operator/src emulator/src tests bench demo examples

format: install ## Apply ruff's fixes and formatting
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

crds: install ## Regenerate the AgentPersistence CRD from the config model; sync the chart's copy
	@$(PY) -m agentpersistence.operator.crd > crds/agentpersistence.io_agentpersistences.yaml
	@bash scripts/sync-chart-crds.sh

testenv: ## Build the Kubernetes binaries, etcd, helm and CoreDNS into the cache (first run: minutes)
	@bash tests/testenv/build.sh

cluster: install testenv ## A single-node cluster on this machine, chart installed (root); prints how to use it
	@PYTHONPATH=tests $(PY) -m rig.cluster up --chart

cluster-down: install ## Stop the local cluster and undo everything it changed on this machine
	@PYTHONPATH=tests $(PY) -m rig.cluster down

e2e-kind: install testenv ## The e2e tier on a kind cluster instead (needs Docker and kind)
	@AGENTPERSISTENCE_E2E_PROVIDER=kind $(PY) -m pytest tests/e2e

test: lint testenv ## Lint, type-check and run every test tier, then the Python-sensitive ones on 3.12-3.14
	@echo "==> pytest, every tier (Python $$($(PY) -c 'import platform; print(platform.python_version())'))"
	@$(PY) -m pytest
	@$(MAKE) --no-print-directory test-pythons

test-pythons: install ## The contract, graph, store and unit tiers on Python 3.12, 3.13 and 3.14 (needs root)
	@echo "==> contract, graph, store and unit tiers on Python 3.12, 3.13 and 3.14"
	@PYTHONPATH=tests $(PY) -m rig.pythons test

test-fast: install ## Tests without the Kubernetes control plane and the cluster
	@$(PY) -m pytest -m "not controlplane and not cluster"

bench: install ## Latency against in-process peers, on this Python and on 3.13 (the image's); BENCH_ARGS=--quick
	@echo "==> bench on Python $$($(PY) -c 'import platform; print(platform.python_version())')"
	@$(PY) -m bench $(BENCH_ARGS)
	@echo "==> bench on Python 3.13, the sidecar image's"
	@PYTHONPATH=tests $(PY) -m rig.pythons bench --python 3.13 -- $(BENCH_ARGS)

bench-operator: install testenv ## The operator under load: 200 resources at once, then 20 pod admissions/s for a minute; BENCH_ARGS=--resources 50
	@$(PY) -m bench.operator_load $(BENCH_ARGS)

clean: ## Remove .venv and build litter (the download cache stays)
	rm -rf $(VENV) .mypy_cache .ruff_cache client/src/*.egg-info sidecar/src/*.egg-info operator/src/*.egg-info emulator/src/*.egg-info
