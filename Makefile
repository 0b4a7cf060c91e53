# Two commands that work on a fresh machine: `make demo` (the main job) and `make test`.
# Each creates .venv and installs what it needs. PRETRIEVER_DATA defaults to ../shared/datasets.
# torch is installed first and pinned, so that pip takes the CPU wheel on this machine's disk
# instead of resolving an unpinned torch to a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PRETRIEVER_DATA ?= $(abspath ../shared/datasets)
export PRETRIEVER_DATA
# everything runs offline: models come from local folders or the bundled MiniLM package
export HF_HUB_OFFLINE ?= 1

.PHONY: venv demo test test-fast lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q '$(TORCH)'
	$(BIN)/pip install -q -e '.[faiss,openvino,train,serve,sparse,dev,bench]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/pretriever quickstart --dataset scifact --out reports/scifact-test --overwrite

# everything CI runs (under 15 minutes on 2 CPU cores)
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# for development: ruff and every test not marked slow (under 2 minutes on 2 CPU cores)
test-fast: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

bench: venv
	$(BIN)/python benchmarks/bm25.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
