# smart-estate: every target sets up what it needs first (idempotent, quick when done).
#   make demo   set up, then run the stack on the demo county (Ctrl-C stops everything)
#   make test   set up, then lint, type-check and run every test
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
N ?= 10
LOADED ?= 3

.PHONY: help setup system venv web demo test test-repeat check lint typecheck format bench clean stop

help:
	@echo "make demo   - set everything up and run the demo stack (Ctrl-C stops it)"
	@echo "make test   - set everything up, run ruff, mypy --strict and the tests"
	@echo "make test-repeat N=10 LOADED=3 - the suite N times (the last LOADED beside a CPU hog),"
	@echo "               then a table of every test that ever failed"
	@echo "make check  - ruff and mypy --strict only"
	@echo "make bench  - the benchmarks in bench/ (figures in docs/benchmarks.md)"
	@echo "make stop   - stop this checkout's private servers"
	@echo "make clean  - stop them and delete var/ (all local data)"

setup: system venv web

system:
	@scripts/setup-system.sh

venv:
	@scripts/setup-venv.sh

web:
	@scripts/setup-web.sh

demo: setup
	$(BIN)/estate demo

check: venv lint typecheck

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: setup check
	cd api/web && npx --no-install vitest run
	$(BIN)/pytest $(PYTEST_ARGS)

test-repeat: setup check
	$(BIN)/python scripts/test_repeat.py --runs $(N) --loaded $(LOADED) -- $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench.telemetry_layout
	$(BIN)/python -m bench.receive
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.alerts
	$(BIN)/python -m bench.dispatch
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.cluster
	$(BIN)/python -m bench.storage

stop: venv
	$(BIN)/estate services stop

clean: stop
	rm -rf var
