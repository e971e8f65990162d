# Two commands matter: `make demo` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SHELL := /bin/bash

.PHONY: demo test test-unit lint docs cluster-up cluster-down bench clean-venv report-tools report-screenshot studies-smoke backbones

# The venv is rebuilt when pyproject.toml changes. torch/torchvision are pinned in
# constraints.txt as a pair from the registry (about 6 GB the first time, cached by pip afterwards).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	# The distribution was called `orchestrate` before 0.2.0 (a name taken on the public index).
	$(BIN)/pip uninstall --quiet --disable-pip-version-check -y orchestrate 2>/dev/null || true
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	# DeepSpeed ships as source whose setup.py imports torch: build it against the pinned torch
	# (with build isolation pip would fetch another torch into the build environment).
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation -c constraints.txt \
	  'deepspeed==0.19.8' 'transformers>=4.46'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/orchestrate submit sweeps/demo.yaml --executor local
	$(BIN)/orchestrate collect sweeps/demo.yaml
	@echo "demo table: results/demo/tables/table.md"

test: $(STAMP) cluster-up report-tools docs
	$(BIN)/pytest

test-unit: $(STAMP) report-tools
	$(BIN)/pytest -m "not slurm and not slow"

lint: $(STAMP)
	$(BIN)/ruff check orchestrator trainers tests bench docs
	$(BIN)/ruff format --check orchestrator trainers tests bench docs
	$(BIN)/mypy

# The docs site (mkdocs + Material), strict: a broken link or a missing page fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "docs site: site/index.html"

cluster-up:
	bash slurm/dev-cluster/start.sh

cluster-down:
	bash slurm/dev-cluster/stop.sh

bench: $(STAMP)
	$(BIN)/python bench/plan_scale.py

# pdflatex (+ booktabs) and headless Chromium: the LaTeX-compile and report-screenshot tests need them.
# Idempotent: installs the Debian packages (about 130 MB) only when a command is missing.
report-tools:
	@command -v pdflatex >/dev/null && command -v chromium >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    texlive-latex-base texlive-latex-recommended chromium fonts-dejavu-core; }

# The HTML report of a fixture sweep, and a headless-Chromium screenshot of it to look at.
report-screenshot: $(STAMP) report-tools
	$(BIN)/python tests/tables_fixture.py results/report-screenshot

# The backbone table `plan` checks names and patch sizes against (orchestrator/sweep/backbones.py),
# for the installed timm: run after a timm upgrade and commit the file.
backbones: $(STAMP)
	$(BIN)/python -m orchestrator.sweep.backbones --ship

# Every study of sweeps/ at smoke scale (fixture data, tiny models, CPU) through the CLI:
# `orchestrate submit --smoke --executor local`, then `collect --smoke`. the docs' study tables come from here.
studies-smoke: $(STAMP)
	$(BIN)/python tests/studies_fixture.py results/studies-smoke
