# Encore — `make help` lists the targets.
SHELL := /bin/bash
PORT ?= 8000
HOST ?= 127.0.0.1
OPENAPI_OUT ?= openapi/openapi.json
PYTHON ?= python3
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

# uv comes from PyPI into .tools/ when it is not already on PATH: nothing installed by hand.
UV := $(shell command -v uv 2>/dev/null || echo .tools/uv/bin/uv)
VENV := .venv
STAMP := $(VENV)/.synced

.PHONY: help setup run serve worker migrate stripe-stub test unit integration bench openapi lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.tools/uv/bin/uv:
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install --quiet --disable-pip-version-check 'uv>=0.5'

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $(STAMP)

setup: $(STAMP) ## install everything (uv, Python packages) into .venv

run: $(STAMP) ## start the API and the worker on an embedded PostgreSQL (or ENCORE_DATABASE_URL), PORT=8000
	$(VENV)/bin/encore run --host $(HOST) --port $(PORT)

serve: $(STAMP) ## serve the API without a demo program (migrations applied first), PORT=8000
	$(VENV)/bin/encore serve --host $(HOST) --port $(PORT)

worker: $(STAMP) ## run only the worker (outbox dispatch, webhook delivery, ledger sweeps)
	$(VENV)/bin/encore worker

stripe-stub: $(STAMP) ## a local Stripe stand-in on 127.0.0.1:12111 for trying the Stripe integration without an account
	$(VENV)/bin/python -m tests.support.stripe_local --port 12111 --sessions docs/stripe/sessions.json

migrate: $(STAMP) ## apply the Piccolo migrations
	$(VENV)/bin/encore migrate

test: $(STAMP) ## install and run the whole test suite
	$(VENV)/bin/ruff check service tests bench
	$(VENV)/bin/ruff format --check service tests bench
	$(VENV)/bin/mypy service
	$(VENV)/bin/pytest

unit: $(STAMP) ## only the pure-logic tests
	$(VENV)/bin/pytest tests/unit

bench: $(STAMP) ## benchmarks (pgbench baseline, HTTP load, sweeps, webhooks, rules, tiers); ONLY=foundation,rules runs those groups alone; results in bench/results/
	$(if $(ONLY),BENCH_ONLY=$(ONLY)) $(VENV)/bin/python -m bench.run

openapi: $(STAMP) ## write the OpenAPI document (OPENAPI_OUT=path to write elsewhere)
	$(VENV)/bin/encore openapi --out $(OPENAPI_OUT)

lint: $(STAMP) ## ruff + mypy
	$(VENV)/bin/ruff check service tests bench
	$(VENV)/bin/ruff format --check service tests bench
	$(VENV)/bin/mypy service

fmt: $(STAMP) ## format the code
	$(VENV)/bin/ruff format service tests bench
	$(VENV)/bin/ruff check --fix service tests bench

clean: ## remove the virtualenv and tools (keeps .data/)
	rm -rf $(VENV) .tools
