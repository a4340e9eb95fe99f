# guardrails.ec2 — every set-up step and check, runnable on a fresh machine.
#
#   make demo    start LocalStack, protect demo instances, drill the loop, print a report
#   make test    lint, sanity, unit, harness and molecule tests, collection build
#
# Virtual environments live in .venv/ (git-ignored); everything is pinned in requirements/.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
VENV_DIR := $(ROOT)/.venv
BUILD_DIR := $(ROOT)/.build
VERSION := $(shell sed -n 's/^version: *//p' $(ROOT)/galaxy.yml)
STATE_DIR := $(ROOT)/.localstack
UV_VERSION := 0.13.9

# A Python >= 3.13 (ansible-core 2.21 and LocalStack 2026.3 need it), found, never assumed.
PYTHON := $(shell tools/find-python 3.13 2>/dev/null)
UV := $(or $(shell command -v uv 2>/dev/null),$(VENV_DIR)/bootstrap/bin/uv)

ANSIBLE_VENV := $(VENV_DIR)/ansible
LOCALSTACK_VENV := $(VENV_DIR)/localstack
LAMBDA_RUNTIME := $(VENV_DIR)/lambda-runtime
BIN := $(ANSIBLE_VENV)/bin
SITE_PACKAGES = $(shell test -x $(BIN)/python && $(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# The collection must be importable as guardrails.ec2: a git-ignored tree links to the checkout.
COLLECTIONS_DIR := $(BUILD_DIR)/collections
export ANSIBLE_COLLECTIONS_PATH = $(COLLECTIONS_DIR):$(SITE_PACKAGES)
export ANSIBLE_LOCAL_TEMP := $(BUILD_DIR)/ansible-tmp
export ANSIBLE_HOME := $(BUILD_DIR)/ansible-home
export PATH := $(BIN):$(PATH)

# Settings for the emulator that tests use: async retries after 1 s, not AWS's 60 s.
TEST_EMULATOR_ENV := --env LAMBDA_RETRY_BASE_DELAY=1 --env GUARDRAILS_ALARM_EVALUATION_SECONDS=10
LAUNCHER = $(LOCALSTACK_VENV)/bin/python tools/localstack/launcher.py --state-dir $(STATE_DIR)
WITH_EMULATOR = set -a; . $(STATE_DIR)/endpoint.env; set +a;

.PHONY: help
help:
	@echo "make demo             protect demo instances on LocalStack and drill the stop -> restart loop"
	@echo "make test             every check: lint, sanity, unit, harness, molecule, build"
	@echo "make lint | sanity | unit | harness | molecule | build"
	@echo "make emulator-start   start LocalStack (host mode) and print its endpoint"
	@echo "make emulator-stop    stop it and every process it started"
	@echo "make bench            rollout and recovery beside Cloud Custodian, on one LocalStack"
	@echo "make lock             re-resolve the pinned requirements"
	@echo "make clean            remove virtual environments and build output"

# --- tool installation ---------------------------------------------------------------

.PHONY: python
python:
	@test -n "$(PYTHON)" || { tools/find-python 3.13; exit 1; }

$(VENV_DIR)/bootstrap/bin/uv: | python
	$(PYTHON) -m venv $(VENV_DIR)/bootstrap
	$(VENV_DIR)/bootstrap/bin/python -m pip install --quiet uv==$(UV_VERSION)

# Installs compile bytecode, as pip does by default (uv does not): every ansible-playbook,
# module process and emulator then imports boto3 and Ansible from .pyc files, also where
# PYTHONDONTWRITEBYTECODE keeps Python from writing them on first import (a fresh clone
# otherwise recompiles them in every process, about twice the time of a playbook run).
UV_PIP := --quiet --compile-bytecode

$(ANSIBLE_VENV)/.installed: requirements/ansible.txt | $(UV) python
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(ANSIBLE_VENV)
	VIRTUAL_ENV=$(ANSIBLE_VENV) $(UV) pip sync $(UV_PIP) requirements/ansible.txt
	touch $@

$(LOCALSTACK_VENV)/.installed: requirements/localstack.txt tools/localstack/pyproject.toml | $(UV) python
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(LOCALSTACK_VENV)
	VIRTUAL_ENV=$(LOCALSTACK_VENV) $(UV) pip sync $(UV_PIP) requirements/localstack.txt
	VIRTUAL_ENV=$(LOCALSTACK_VENV) $(UV) pip install $(UV_PIP) --no-deps -e tools/localstack
	touch $@

$(LAMBDA_RUNTIME)/.installed: requirements/lambda-runtime.txt | $(UV) python
	$(UV) pip install $(UV_PIP) --python $(PYTHON) --target $(LAMBDA_RUNTIME) -r requirements/lambda-runtime.txt
	touch $@

$(COLLECTIONS_DIR)/ansible_collections/guardrails/ec2:
	mkdir -p $(dir $@) $(ANSIBLE_LOCAL_TEMP) $(ANSIBLE_HOME)
	ln -sfn $(ROOT) $@

# Mitogen for Ansible, for the bench's second set of rows only: the collection never needs
# it. Installed as a plain folder; the bench points ANSIBLE_STRATEGY_PLUGINS at it.
MITOGEN_VERSION := 0.3.54
$(VENV_DIR)/mitogen/.installed: | $(UV) ansible-env
	rm -rf $(VENV_DIR)/mitogen
	$(UV) pip install $(UV_PIP) --python $(ANSIBLE_VENV)/bin/python --target $(VENV_DIR)/mitogen mitogen==$(MITOGEN_VERSION)
	touch $@

$(VENV_DIR)/c7n/.installed: requirements/c7n.txt | $(UV) python
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV_DIR)/c7n
	VIRTUAL_ENV=$(VENV_DIR)/c7n $(UV) pip sync $(UV_PIP) requirements/c7n.txt
	touch $@

.PHONY: ansible-env localstack-env
ansible-env: $(ANSIBLE_VENV)/.installed $(COLLECTIONS_DIR)/ansible_collections/guardrails/ec2
localstack-env: $(LOCALSTACK_VENV)/.installed $(LAMBDA_RUNTIME)/.installed

.PHONY: lock
lock: | $(UV)
	cd requirements && $(UV) pip compile -q --python-version 3.13 --universal ansible.in -o ansible.txt
	cd requirements && $(UV) pip compile -q --python-version 3.13 --exclude-newer 2026-03-25 localstack.in -o localstack.txt
	cd requirements && $(UV) pip compile -q --python-version 3.12 --exclude-newer 2026-03-25 lambda-runtime.in -o lambda-runtime.txt
	cd requirements && $(UV) pip compile -q --python-version 3.13 c7n.in -o c7n.txt

# --- emulator --------------------------------------------------------------------------

# Async Lambda retries wait LAMBDA_RETRY_BASE_DELAY seconds (60 on AWS); tests want 1.
# Alarms are evaluated every GUARDRAILS_ALARM_EVALUATION_SECONDS (60 on AWS); tests want 10.
EMULATOR_ENV ?= $(TEST_EMULATOR_ENV)

.PHONY: emulator-start emulator-stop
emulator-start: localstack-env
	@$(LAUNCHER) start $(EMULATOR_ENV)
	@echo "export the settings with: set -a; . $(STATE_DIR)/endpoint.env; set +a"

emulator-stop:
	@if [ -x $(LOCALSTACK_VENV)/bin/python ]; then $(LAUNCHER) stop; else echo "no emulator environment"; fi

# --- checks ----------------------------------------------------------------------------

.PHONY: test lint ruff ansible-lint changelog-lint sanity unit harness molecule build ee
test: lint unit build ee sanity
	$(MAKE) emulator-start
	trap '$(MAKE) --no-print-directory emulator-stop' EXIT; \
	$(MAKE) --no-print-directory harness molecule

lint: ruff ansible-lint changelog-lint

ruff: ansible-env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

ansible-lint: ansible-env
	$(BIN)/ansible-lint --offline

changelog-lint: ansible-env
	$(BIN)/antsibull-changelog lint

unit: ansible-env
	$(BIN)/python -m pytest tests/unit

harness: ansible-env localstack-env
	$(BIN)/python -m pytest tests/harness

build: ansible-env
	mkdir -p $(BUILD_DIR)/dist
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD_DIR)/dist .
	$(BIN)/python tools/check-package.py $(BUILD_DIR)/dist/guardrails-ec2-$(VERSION).tar.gz $(BUILD_DIR)/install

# The example execution environment (docs/awx): ansible-builder writes its build context
# (no container engine needed); introspecting the installed tarball shows that the
# collection's meta/execution-environment.yml brings boto3 and botocore.
ee: build
	rm -rf $(BUILD_DIR)/ee
	$(BIN)/ansible-builder create -f docs/awx/execution-environment.yml -c $(BUILD_DIR)/ee --output-filename Containerfile
	test -s $(BUILD_DIR)/ee/Containerfile
	grep -q 'guardrails.ec2' $(BUILD_DIR)/ee/_build/requirements.yml
	$(BIN)/ansible-builder introspect $(BUILD_DIR)/install > $(BUILD_DIR)/ee/introspect.txt
	grep -q 'boto3>=1.35.0' $(BUILD_DIR)/ee/introspect.txt
	grep -q 'botocore>=1.35.0' $(BUILD_DIR)/ee/introspect.txt

# ansible-test runs on the built artifact, unpacked as ansible_collections/guardrails/ec2,
# with amazon.aws beside it; HOME is kept inside the build folder.
SANITY_ROOT := $(BUILD_DIR)/sanity
sanity: build
	rm -rf $(SANITY_ROOT)/ansible_collections/guardrails
	mkdir -p $(SANITY_ROOT)/ansible_collections/guardrails/ec2 $(SANITY_ROOT)/ansible_collections/amazon $(SANITY_ROOT)/home
	tar -xzf $(BUILD_DIR)/dist/guardrails-ec2-$(VERSION).tar.gz -C $(SANITY_ROOT)/ansible_collections/guardrails/ec2
	ln -sfn $(SITE_PACKAGES)/ansible_collections/amazon/aws $(SANITY_ROOT)/ansible_collections/amazon/aws
	# ansible-test lists files with git; inside this checkout it would see the parent repo
	# (where .build is ignored), so the unpacked tree gets an index of its own.
	cd $(SANITY_ROOT)/ansible_collections/guardrails/ec2 && git init -q && git add -A
	HOME=$(SANITY_ROOT)/home $(BIN)/python tools/sanity-bootstrap.py
	cd $(SANITY_ROOT)/ansible_collections/guardrails/ec2 && \
	  HOME=$(SANITY_ROOT)/home $(BIN)/ansible-test sanity --local --python 3.13 --requirements --color no

molecule: ansible-env localstack-env
	@scenarios=$$(ls -d extensions/molecule/*/ 2>/dev/null | xargs -n1 basename | grep -v '^shared$$' || true); \
	if [ -z "$$scenarios" ]; then echo "molecule: no scenarios yet"; exit 0; fi; \
	started=0; if ! $(LAUNCHER) status >/dev/null; then $(LAUNCHER) start $(TEST_EMULATOR_ENV) >/dev/null; started=1; fi; \
	trap '[ $$started = 1 ] && $(LAUNCHER) stop' EXIT; \
	$(WITH_EMULATOR) for scenario in $$scenarios; do $(BIN)/molecule test -s $$scenario; done

# --- demo ------------------------------------------------------------------------------

.PHONY: demo
demo: ansible-env localstack-env
	$(BIN)/python tools/demo.py

# --- bench ---------------------------------------------------------------------------

.PHONY: bench
bench: ansible-env localstack-env $(VENV_DIR)/c7n/.installed $(VENV_DIR)/mitogen/.installed
	$(BIN)/python tools/bench/bench.py

.PHONY: clean
clean: emulator-stop
	rm -rf $(VENV_DIR) $(BUILD_DIR) $(STATE_DIR)
