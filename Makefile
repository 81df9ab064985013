# Run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
export FLASK_APP := app
# The PostgreSQL server the second test pass runs against (a fresh database is created on it).
TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.DEFAULT_GOAL := help

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-runtime

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: setup
setup: $(VENV)/.installed-runtime ## Create the virtualenv, migrate the database, load demo content
	$(BIN)/flask db upgrade
	$(BIN)/flask content import

.PHONY: run
run: setup ## Serve the site at http://127.0.0.1:$(PORT) on the embedded defaults
	$(BIN)/flask run --host 127.0.0.1 --port $(PORT)

.PHONY: serve
serve: setup ## Serve with gunicorn, as in production (see deploy/)
	$(BIN)/gunicorn --config deploy/gunicorn.conf.py 'app:create_app()'

.PHONY: test
test: $(VENV)/.installed-dev ## Run the whole suite: SQLite with the browser tests, then PostgreSQL
	$(BIN)/pytest --cov --cov-report=term:skip-covered
	TEST_DATABASE_URL=$(TEST_POSTGRES_URL) $(BIN)/pytest -m "not e2e" --cov --cov-append --cov-report=term:skip-covered

.PHONY: lint
lint: $(VENV)/.installed-dev ## Check style with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: bench
bench: $(VENV)/.installed-dev ## Time the staff inbox with 1,000 and 100,000 leads (PostgreSQL)
	$(BIN)/python bench/inbox.py

.PHONY: browser
browser: ## Install Debian's Chromium for the browser tests (needs root)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
