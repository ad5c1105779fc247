# Two commands matter: `make demo` and `make test`. Each does all of its own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
SYSDEPS := scripts/system-deps.sh

.PHONY: demo test lint venv broker-deps postgres-deps browser-deps clean proto

demo: venv broker-deps
	$(VENV)/bin/commbench run scenarios/quick.toml --report

test: venv broker-deps postgres-deps browser-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n 2  # two workers; tests/conftest.py says what they share

lint: venv
	$(VENV)/bin/ruff check .

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "commbench: Python 3.11 or newer is needed (found $$($(PYTHON) --version))" >&2; exit 2; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
	  $(SYSDEPS) __missing__:python3-venv
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

broker-deps:
	@$(SYSDEPS) rabbitmq-server:rabbitmq-server

# The eventsourced tests use the PostgreSQL on 127.0.0.1:5432 when it answers, else start a
# private cluster from these binaries (harness/stage/postgres.py).
postgres-deps:
	@$(SYSDEPS) /usr/lib/postgresql/15/bin/initdb:postgresql-15

browser-deps:
	@$(SYSDEPS) chromium:chromium

proto: venv
	$(VENV)/bin/python -m targets.grpc.generate

clean:
	rm -rf $(VENV) build *.egg-info test-artifacts
