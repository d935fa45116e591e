# The two commands: `make run` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test services lint typecheck unit faults bench clean cluster cluster-down

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/taskproc run

services: $(STAMP)
	$(BIN)/taskproc services

test: services
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy .
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

faults: services
	$(BIN)/pytest tests/faults tests/load

# Benchmarks the local stack and prints one table (python -m bench --help for options).
bench: services
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache

# A three-node RabbitMQ cluster, each node on a test host of its own (network namespaces; needs
# root): `make cluster` starts it and prints its RABBITMQ_URL, `make cluster-down` removes it.
cluster: $(STAMP)
	$(BIN)/python -m devtools.cluster up

cluster-down: $(STAMP)
	$(BIN)/python -m devtools.cluster down
