# Two commands that work on a fresh machine: `make demo` (the main job) and `make test`.
# Each creates .venv and installs what it needs. PRETRIEVER_DATA defaults to ../shared/datasets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PRETRIEVER_DATA ?= $(abspath ../shared/datasets)
export PRETRIEVER_DATA

.PHONY: venv demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/pretriever evaluate --dataset scifact --retriever bm25

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python benchmarks/bm25.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
