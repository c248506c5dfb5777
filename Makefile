# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create (or update) the local virtual environment in .venv first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint setup clean-venv bench

setup: $(STAMP)

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

demo: $(STAMP)
	$(BIN)/iron demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check ironrender tests benchmarks
	$(BIN)/lint-imports --no-logo

bench: $(STAMP)
	$(BIN)/python -m pytest -q -m benchmark

clean-venv:
	rm -rf $(VENV)
