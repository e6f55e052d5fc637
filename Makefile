# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean help

help:
	@echo "make demo   install, then run the server with a simulated fleet and the live map"
	@echo "make test   install, then run lint, type checks and the whole test suite"
	@echo "make bench  run the benchmarks in bench/ (figures go to docs/benchmarks.md by hand)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/yijing demo --terminals $${TERMINALS:-30} --port $${PORT:-8080}

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/protocol_bench.py
	$(BIN)/python bench/agent_bench.py
	$(BIN)/python bench/camera_bench.py
	$(BIN)/python bench/slow_link_bench.py
	$(BIN)/python bench/duty_bench.py
	$(BIN)/python bench/live_bench.py
	$(BIN)/python bench/dispatch_bench.py
	$(BIN)/python bench/enrol_bench.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
