# Set-up on a fresh machine with only Python 3.11: every target creates .venv and installs
# what it needs. torch==2.13.0 goes first so pip takes the CPU wheel on disk instead of a
# multi-GB CUDA build that an unpinned `torch` requirement would pull.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-output
# `make reference`: generates the small suite unless SMALL_STORE names one, benchmarks every
# baseline on the error and downstream tracks with the reference settings of
# trajbench/report/reference.py, and writes the committed leaderboard to REFERENCE_DIR.
# NINO_CHECKPOINTS=DIR (a folder holding NiNo's released nino_no_posw.pt and nino_mlp.pt,
# never shipped) adds nino and wnn_plus; without it they are left out, and it says so.
# NINO_TRAINED=FILE (the nino.pt of `trajbench train-forecaster nino`) adds that NiNo too.
SMALL_STORE ?=
NINO_CHECKPOINTS ?=
NINO_TRAINED ?=
REFERENCE_DIR ?= reports/small
REFERENCE_WORK ?= reference-work

.PHONY: install lint test demo clean benchmark reference mutate

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# ruff (rules and formatting at 100 characters) and mypy (trajbench and baselines), as
# configured in pyproject.toml; `make test` runs it first, so CI enforces it.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# two worker processes, one test file each at a time (module fixtures stay per file):
# the whole suite in about 4 minutes on 2 cores instead of about 6 (pytest-xdist)
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

demo: $(STAMP)
	$(BIN)/python -m trajbench.demo --out $(DEMO_DIR)

reference: $(STAMP)
	$(BIN)/python -m trajbench.report.reference --out $(REFERENCE_DIR) --work $(REFERENCE_WORK) $(if $(SMALL_STORE),--store $(SMALL_STORE),) $(if $(NINO_CHECKPOINTS),--nino-checkpoints $(NINO_CHECKPOINTS),) $(if $(NINO_TRAINED),--nino-trained $(NINO_TRAINED),)

benchmark: $(STAMP)
	$(BIN)/python benchmarks/recorder.py
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/harness.py

# Mutation testing of the core modules (mutmut; about 13.5 minutes on 2 cores, so not part of
# `make test` or CI):
# each group of modules runs in its own scratch copy under .mutate/ with only the test
# files that own it, numba kernels as Python (NUMBA_DISABLE_JIT=1). Scores and survivors:
# .mutate/summary.json; the recorded ones and why survivors are acceptable: docs/testing.md.
# MUTATE_GROUPS picks groups (`.venv/bin/python tests/mutate.py --list`).
MUTATE_GROUPS ?=
mutate: $(STAMP)
	NUMBA_DISABLE_JIT=1 $(BIN)/python tests/mutate.py $(MUTATE_GROUPS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(REFERENCE_WORK) .pytest_cache .hypothesis .mypy_cache .ruff_cache
