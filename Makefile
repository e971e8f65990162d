# Two commands matter: `make demo` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SHELL := /bin/bash

.PHONY: demo test test-unit lint cluster-up cluster-down bench clean-venv

# The venv is rebuilt when pyproject.toml changes. torch/torchvision are pinned there
# as a pair from the registry (about 6 GB the first time, cached by pip afterwards).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/orchestrate submit sweeps/demo.yaml --executor local
	$(BIN)/orchestrate collect sweeps/demo.yaml
	@echo "demo table: results/demo/tables/table.md"

test: $(STAMP) cluster-up
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest -m "not slurm and not slow"

lint: $(STAMP)
	$(BIN)/ruff check orchestrator trainers tests bench
	$(BIN)/ruff format --check orchestrator trainers tests bench
	$(BIN)/mypy

cluster-up:
	bash slurm/dev-cluster/start.sh

cluster-down:
	bash slurm/dev-cluster/stop.sh

bench: $(STAMP)
	$(BIN)/python bench/plan_scale.py
