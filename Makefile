# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: help install demo test test-unit test-integration test-e2e bench lint format stack-up stack-status stack-down clean

help:
	@echo "make demo    set up, start the local stack, run the whole pipeline through Airflow"
	@echo "make test    set up, run the whole test suite (unit, integration, e2e)"
	@echo "make bench   run every benchmark in bench/"
	@echo "make lint    ruff check and format check, import-linter layer contracts"
	@echo "make stack-up | stack-status | stack-down   the local services"

# The venv is (re)built when the pinned dependencies change.
$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

install: $(INSTALLED)

.env:
	cp .env.example .env

demo: $(INSTALLED) .env
	$(BIN)/mlpipe demo

test: lint
	$(BIN)/pytest

test-unit: $(INSTALLED)
	$(BIN)/pytest -m unit

test-integration: $(INSTALLED)
	$(BIN)/pytest -m integration

test-e2e: $(INSTALLED)
	$(BIN)/pytest -m e2e

bench: $(INSTALLED)
	@set -e; for f in bench/[a-z]*.py; do \
		[ -e "$$f" ] || { echo "no benchmarks yet"; break; }; \
		$(BIN)/python -m bench.$$(basename $$f .py); \
	done

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

stack-up: $(INSTALLED) .env
	$(BIN)/mlpipe stack up

stack-status: $(INSTALLED)
	$(BIN)/mlpipe stack status

stack-down: $(INSTALLED)
	$(BIN)/mlpipe stack down

clean: stack-down
	rm -rf .mlpipe
