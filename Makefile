# Run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app
# The PostgreSQL server every database test also runs against (the suite creates its own
# databases on it).
TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
# pytest-xdist workers, each with its own SQLite files and PostgreSQL database: one a core and
# one more, because browser tests and SMTP timeouts leave a core waiting.
PYTEST_WORKERS ?= --numprocesses $(shell echo $$(( $$(nproc) + 1 )))

.DEFAULT_GOAL := help

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Dependencies come from the lockfiles, pinned with hashes; the project itself is editable.
$(VENV)/.installed-runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.installed-runtime

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: setup
setup: $(VENV)/.installed-runtime ## Create the virtualenv, migrate the database, load demo content
	$(BIN)/flask db upgrade
	$(BIN)/flask content import

.PHONY: run
run: setup ## Serve the site at http://127.0.0.1:5000 (PORT) on the embedded defaults
	$(BIN)/flask run --host 127.0.0.1 --port $(or $(PORT),5000)

.PHONY: serve
serve: setup nginx ## Serve as in production: nginx cache on :8000 (PORT), gunicorn, mail worker
	SERVE_PORT=$(or $(PORT),8000) APP_PORT=$(or $(APP_PORT),8001) SERVE_DIR=$(CURDIR)/instance/serve \
		$(BIN)/honcho --procfile Procfile start

# pa11y for the accessibility tests, pinned in tests/a11y/package-lock.json; it drives Debian's
# Chromium (tests/a11y/pa11y.json), so Puppeteer's own browser download is skipped.
tests/a11y/node_modules/.installed: tests/a11y/package-lock.json
	PUPPETEER_SKIP_DOWNLOAD=1 npm ci --silent --prefix tests/a11y
	touch $@

.PHONY: test
test: $(VENV)/.installed-dev tests/a11y/node_modules/.installed ## Run the whole suite: database tests on SQLite and PostgreSQL, browser tests
	TEST_DATABASE_URL=$(TEST_POSTGRES_URL) $(BIN)/pytest $(PYTEST_WORKERS) --cov --cov-report=term:skip-covered

PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links

# LOCK_OPTIONS=--upgrade takes the newest releases the ranges allow; without it pins stay.
LOCK_OPTIONS ?=

.PHONY: lock
lock: $(VENV)/.installed-dev ## Re-pin requirements*.txt (with hashes) after pyproject.toml changed
	$(PIP_COMPILE) $(LOCK_OPTIONS) --output-file requirements.txt pyproject.toml
	$(PIP_COMPILE) $(LOCK_OPTIONS) --extra dev --constraint requirements.txt \
		--output-file requirements-dev.txt pyproject.toml
	$(BIN)/pip-sync --quiet requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(VENV)/.installed-dev $(VENV)/.installed-runtime

.PHONY: lint
lint: $(VENV)/.installed-dev ## Check style with ruff and the import layers with import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

.PHONY: bench
bench: $(VENV)/.installed-dev nginx browser bench-tools ## Time the staff inbox (PostgreSQL), the served stack (wrk) and two instances behind nginx; weigh pages (Lighthouse)
	$(BIN)/python bench/inbox.py
	$(BIN)/python bench/web.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/pages.py

.PHONY: bench-tools
bench-tools: ## Install Debian's wrk (needs root) and Lighthouse (npm, bench/package-lock.json)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	test -x bench/node_modules/.bin/lighthouse || npm ci --silent --prefix bench

# libfaketime lets the served-stack tests make a cached page that is hours old.
.PHONY: nginx
nginx: ## Install Debian's nginx for make serve, and libfaketime for its tests (needs root; the service itself stays off)
	test -x /usr/sbin/nginx -a -n "$$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null)" || \
		(apt-get update -qq && apt-get install -y -qq nginx faketime)

.PHONY: browser
browser: ## Install Debian's Chromium for the browser tests (needs root)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
