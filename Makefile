# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create (or update) the local virtual environment in .venv first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNELS := $(VENV)/.kernels

.PHONY: demo test lint setup clean-venv bench

setup: $(STAMP) $(KERNELS)

# torch is installed first and pinned through a constraints file, so that no other
# package can pull in a newer (multi-GB CUDA) build.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@-sh scripts/install-tcmalloc.sh
	@-sh scripts/install-chromium.sh
	@touch $(STAMP)

# The fused CPU kernel of the dense grid encoding (ironrender/fields/fused_grid.py), compiled
# once into ~/.cache/ironrender; without a compiler the code falls back to F.grid_sample.
$(KERNELS): $(STAMP) ironrender/fields/dense_grid_kernel.cpp
	@-$(BIN)/python -m ironrender.fields.fused_grid
	@touch $(KERNELS)

demo: setup
	$(BIN)/iron demo

test: setup
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check ironrender tests benchmarks
	$(BIN)/lint-imports --no-logo

bench: setup
	$(BIN)/python -m pytest -q -m benchmark

clean-venv:
	rm -rf $(VENV)
