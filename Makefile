# Developer commands. `make run` and `make test` are all a fresh clone needs.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.8
BIN := $(VENV)/bin

.PHONY: help install install-bench run serve-prod migrate test test-sqlite fuzz screenshots check format lint types bench bench-quick clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --inexact
	@touch $@

install: $(VENV)/.synced ## Create .venv with every pinned dependency (uv.lock)

$(VENV)/.synced-bench: $(VENV)/.synced
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --inexact --group bench
	@touch $@

install-bench: $(VENV)/.synced-bench ## Add the benchmark's peers and tools (the `bench` group)

run: install ## Serve on http://127.0.0.1:8000 (HOST, PORT override), SQLite + in-memory broker
	$(BIN)/townsquare serve

serve-prod: install ## Production server: gunicorn, WEB_CONCURRENCY uvicorn workers (gunicorn.conf.py)
	$(BIN)/gunicorn -c gunicorn.conf.py

bench: install-bench ## Benchmarks against baselines and peers (about 10 min); writes bench/results and the README
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: install-bench ## The same, small and once (under 2 min, a smoke check): bench/results/quick
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

migrate: install ## Bring DATABASE_URL's schema up to date
	$(BIN)/townsquare migrate

test: install ## The whole suite, on SQLite and on PostgreSQL (TEST_POSTGRES_URL)
	$(BIN)/pytest $(PYTEST_ARGS)

test-sqlite: install ## The suite on the embedded default only
	$(BIN)/pytest -m "not postgres" $(PYTEST_ARGS)

fuzz: install ## Longer fuzzing: schemathesis and the WebSocket fuzzer with many more examples
	SCHEMATHESIS_MAX_EXAMPLES=200 WS_FUZZ_EXAMPLES=1000 $(BIN)/pytest -p no:cacheprovider \
		tests/test_schemathesis.py tests/rooms/test_fuzz.py $(PYTEST_ARGS)

screenshots: install ## Retake docs/screenshots (chat, admin page, phone, sessions) with the browser tests
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest tests/web/test_chat.py tests/web/test_admin.py tests/web/test_layout.py \
		"tests/web/test_account_flows.py::test_sessions_page_lists_logins_and_ends_them" -p no:cacheprovider -q

format: install ## Format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: install ## ruff
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: install ## mypy, strict
	$(BIN)/mypy

check: lint types test ## Format check, lint, types and tests

clean: ## Remove the environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
