# lago-dunning: every day-to-day command. `make help` lists them.
# uv is bootstrapped from PyPI into .tools/ when it is not on PATH, so a machine with only
# Python 3.11+ can run everything here.

SHELL := /bin/bash
PYTHON ?= python3
UV_SYSTEM := $(shell command -v uv 2>/dev/null)
UV := $(if $(UV_SYSTEM),$(UV_SYSTEM),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen
# Trust the operating system's certificate store (corporate proxies, private mirrors).
export UV_SYSTEM_CERTS ?= 1
PACKAGES := config worker tasks sandbox bench

.DEFAULT_GOAL := help
.PHONY: help install run test lint typecheck format check-imports pytest bench chaos chaos-short sandbox migrate clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==0.13.8"

install: $(UV) ## Create .venv from uv.lock (all groups)
	$(UV) sync --frozen --all-groups

run: install ## Run the worker on its embedded default (SQLite, filesystem broker, sandbox)
	$(RUN) dunning run || [ $$? -eq 130 ]  # Ctrl-C is the normal way to stop it

test: install lint typecheck check-imports pytest ## The whole suite: lint, types, layering, tests

lint: install ## ruff lint + format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: install ## Apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

typecheck: install ## mypy --strict on our packages
	$(RUN) mypy $(PACKAGES)

check-imports: install ## import-linter layering contracts
	$(RUN) lint-imports

pytest: install ## pytest only (pass ARGS=... for selection)
	$(RUN) pytest $(ARGS)

bench: install ## Benchmarks against the sandbox (prints a table, writes bench/results/*.json)
	$(RUN) python -m bench.run $(ARGS)

chaos: install ## Chaos run on both stacks (bounded, about 8 minutes)
	$(RUN) python -m bench.chaos $(ARGS)

chaos-short: install ## The short chaos run CI uses (about 60 s)
	$(RUN) python -m bench.chaos --short $(ARGS)

sandbox: install ## Start the local Lago sandbox on :8765 with demo data
	$(RUN) dunning sandbox --customers 200 --seed 1

migrate: install ## Apply database migrations
	$(RUN) dunning db upgrade

clean: ## Remove local state and caches (var/, .venv/, caches)
	rm -rf var .venv .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis
