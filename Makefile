# Every target creates .venv itself, so a fresh clone needs only python3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint image clean venv bench

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m relay.demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check relay tests bench
	$(BIN)/mypy

# benchmark suite (bench/run.py): direct vs HAProxy vs relay, under 10 minutes; BENCH_ARGS=--quick
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

image: $(STAMP)
	bash .ci/image.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
