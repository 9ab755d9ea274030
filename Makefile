# meshsre: every target that needs the virtualenv depends on `setup`, so each works on a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
MESHSRE := $(VENV)/bin/meshsre
HOST ?=
PORT ?= 8080

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

setup: system-packages $(VENV)/.installed ## Install the Debian packages it runs (apt-get, as root), .venv with meshsre and the pinned Patroni (idempotent)
	@scripts/install-patroni $(PY)

system-packages:
	@scripts/system-packages

test: setup ## Run the project's tests (real PostgreSQL, Redis, Prometheus, HAProxy)
	$(PY) -m pytest

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check mesh meshsre
	$(VENV)/bin/mypy

fmt: setup ## Format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format mesh meshsre

run: setup ## Run one mesh process in the foreground (PORT=8080, MESH_STORAGE_URL=sqlite:///...)
	$(MESHSRE) serve --port $(PORT)

bench: setup ## Benchmark the runtime (wrk), the load generator (Locust vs wrk) and the governance sidecar; writes reports/out/bench/
	$(PY) -m mesh.bench
	$(PY) -m loadtests.bench
	$(PY) -m loadtests.govbench

.PHONY: help setup system-packages test lint fmt run bench

dashboards: setup ## Generate the Grafana dashboards and sidecar ConfigMaps into dashboards/build/
	$(PY) -m dashboards

.PHONY: dashboards

alerts: setup ## Generate the rules and PrometheusRule from the SLO catalog into alerts/build/, then backtest them (1-2 min)
	$(PY) -m alerts

backtest: setup ## Print every alert's detection and reset times, precision and recall over the fault matrix (promtool)
	$(MESHSRE) alerts backtest

.PHONY: alerts backtest

ZONES ?= a,b,c
REPLICAS ?= 2
STORAGE ?= sqlite

up: setup ## Start the local multi-zone cluster and wait until ready (ZONES=a,b,c REPLICAS=2 STORAGE=sqlite|postgresql://...)
	$(MESHSRE) up --zones $(ZONES) --replicas-per-zone $(REPLICAS) --storage '$(STORAGE)'

down: setup ## Stop every process of the local cluster (pid-checked; also after a failed up)
	$(MESHSRE) down

status: setup ## Show the local cluster: component, zone, address, pid, ready (--json for scripts)
	$(MESHSRE) status

.PHONY: up down status

# Load tests (loadtests/). Every variable is optional: unset ones take `meshsre loadtest`'s
# defaults, and HOST defaults to the local cluster's front door when `meshsre up` is running.
LOADTEST_ARGS = $(if $(HOST),--host '$(HOST)') $(if $(USERS),--users $(USERS)) \
	$(if $(RATE),--rate $(RATE)) $(if $(DURATION),--duration $(DURATION)) \
	$(if $(SHAPE),--shape $(SHAPE))

loadtest: setup ## Load test a mesh, headless: HOST=URL USERS=20 RATE=50 DURATION=60s SHAPE=steady|step|spike|soak
	$(MESHSRE) loadtest $(LOADTEST_ARGS)

loadtest-distributed: setup ## The same with a Locust master and WORKERS=N local workers (default 2)
	$(MESHSRE) loadtest $(LOADTEST_ARGS) --workers $(or $(WORKERS),2)

.PHONY: loadtest loadtest-distributed

# Validation suites against a live deployment; JUnit XML for CI in reports/out/validate/.
# Each suite is skipped, with its reason, when its target is not given.
TARGET ?=
PROMETHEUS ?=
ALERTMANAGER ?=
KUBE_CONTEXT ?=
NAMESPACE ?=
VALIDATE_JUNIT ?= reports/out/validate/junit.xml

validate: setup ## Validate a live mesh: TARGET=URL [PROMETHEUS=URL ALERTMANAGER=URL KUBE_CONTEXT=C NAMESPACE=N]
	$(PY) -m pytest suites -p no:cacheprovider --junitxml=$(VALIDATE_JUNIT) \
		$(if $(TARGET),--target $(TARGET)) $(if $(PROMETHEUS),--prometheus $(PROMETHEUS)) \
		$(if $(ALERTMANAGER),--alertmanager $(ALERTMANAGER)) \
		$(if $(KUBE_CONTEXT),--kube-context $(KUBE_CONTEXT)) $(if $(NAMESPACE),--namespace $(NAMESPACE))

validate-local: setup ## Validate the local cluster (`meshsre up` first); the kubernetes suite is skipped
	@exports="$$($(MESHSRE) status --env)" || { echo "the local cluster is not up: run \`meshsre up\`" >&2; exit 1; }; \
	eval "$$exports"; $(MAKE) --no-print-directory validate TARGET="$$MESH_URL" PROMETHEUS="$$PROMETHEUS_URL" ALERTMANAGER="$$ALERTMANAGER_URL"

deploy-manifests: setup ## Copy the generated PrometheusRule and dashboards into mesh/deploy/base (after alerts, dashboards)
	$(PY) -m mesh.deploy

.PHONY: validate validate-local deploy-manifests

# The nightly job (reports/): up -> steady load -> AZ failure under load -> backup-restore and
# revocation drills -> SLO report -> down. NIGHTLY_QUICK=1 runs it in about two minutes; every
# NIGHTLY_* duration and rate can be overridden (see reports/settings.py).
nightly: setup ## The nightly SLO job on a fresh local cluster; report in reports/out/<run-id>/slo-report.html (NIGHTLY_QUICK=1: under 5 min, blackhole and the data fault)
	$(MESHSRE) nightly

report: setup ## Rebuild the SLO report of a run: RUN=reports/out/<run-id> [PROMETHEUS=URL]
	@test -n "$(RUN)" || { echo "usage: make report RUN=reports/out/<run-id> [PROMETHEUS=URL]" >&2; exit 2; }
	$(MESHSRE) report '$(RUN)' $(if $(PROMETHEUS),--prometheus '$(PROMETHEUS)')

.PHONY: nightly report

# Chaos Toolkit experiments (chaos/): against the local cluster, or MESH_URL, PROMETHEUS_URL and
# MESH_ADMIN_TOKEN when set. Results in reports/out/<run-id>/ (journal, load, chaos-NAME.json).
NAME ?= az-failure

chaos: setup ## Run a chaos drill with rollbacks always: NAME=az-failure|backup-restore|revocation [RUN_ID=...]
	$(MESHSRE) chaos $(NAME) $(if $(RUN_ID),--run-id '$(RUN_ID)')

.PHONY: chaos
