# `make demo` and `make test` do all the set-up on a fresh machine (see README).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install sysdeps lint format test demo bench gpu-wheels clean screenshots

$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

# System tools the tests use (git, xfsprogs for the reflink tests, b3sum for benchmarks),
# a running Docker engine, the local base images the Docker tests build on, and a
# one-node Slurm cluster on 127.0.0.1.
sysdeps:
	@bash scripts/sysdeps.sh
	@bash scripts/browser.sh
	@bash scripts/docker-engine.sh
	@bash scripts/test-images.sh busybox python
	@bash scripts/slurm.sh start

lint: install
	$(BIN)/ruff check datmo tests benchmarks
	$(BIN)/ruff format --check datmo tests benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff format datmo tests benchmarks
	$(BIN)/ruff check --fix datmo tests benchmarks

test: install sysdeps lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

bench: install sysdeps
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/run.py

# docs/img/ui-*.png: the dashboard's main pages, in Debian's headless Chromium.
screenshots: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/ui-screenshots.sh

# Wheels for benchmarks/gpu_check.sh on a GPU machine without network.
# Wheels for benchmarks/gpu_check.sh, for the GPU machine's Python (GPU_PYTHON), which may
# differ from this one: datmo's own wheel plus binary wheels of its dependencies.
GPU_PYTHON ?= 3.12
gpu-wheels: install
	rm -rf .bench/wheels
	$(BIN)/pip wheel -q --no-deps -w .bench/wheels .
	$(BIN)/pip download -q -d .bench/wheels --only-binary=:all: --implementation cp \
	  --python-version $(GPU_PYTHON) --platform manylinux_2_28_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 .bench/wheels/datmo-*.whl

clean:
	rm -rf $(VENV) .bench build *.egg-info .pytest_cache .mypy_cache .ruff_cache
