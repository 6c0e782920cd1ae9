# The targets here are exactly what CI runs (.ci/run) and what the README documents.
# Every target installs what it needs itself; a second run is quick (stamp files).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.drd-installed
SYSTAMP := $(VENV)/.drd-system-deps

.PHONY: test demo lint format docs deps system-deps lock clean

test: deps ## install everything the tests need, then run the whole suite (unit + integration)
	$(VENV)/bin/pytest

demo: deps ## start a local PostgreSQL estate, validate the example config, show `drd status`
	$(PY) -m drd.demo

lint: deps ## ruff (lint + format check) and mypy --strict on drd/
	$(VENV)/bin/ruff check drd tests
	$(VENV)/bin/ruff format --check drd tests
	$(VENV)/bin/mypy

docs: deps ## regenerate docs/config-reference.md from the config models
	$(PY) -m drd.config.reference docs/config-reference.md

format: deps
	$(VENV)/bin/ruff check --fix drd tests
	$(VENV)/bin/ruff format drd tests

deps: system-deps $(STAMP)

system-deps:
	@scripts/install-system-deps.sh

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

lock: ## re-resolve requirements.lock from pyproject.toml (needs network)
	@test -x $(VENV)/bin/uv || $(VENV)/bin/pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 -o requirements-runtime.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo
