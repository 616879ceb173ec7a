# Every target creates .venv itself, so a fresh clone needs only python3 and make.
#
# relay runs compiled (mypyc, setup.py's COMPILED modules) or pure. The venv holds an
# editable, pure install (RELAY_PURE=1: mypyc cannot build an editable install that follows
# edits). `make compiled` builds the compiled modules in place: .so files next to their .py
# files, which Python imports instead of the .py, in this process and in the `python -m relay`
# processes the tests start with PYTHONPATH set to the repo. `make pure` removes them again.
# tests/conftest.py refuses to run when a .py file is newer than its .so (a stale build).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the in-place compiled build; rebuilt when any relay source or setup.py changes
COMPILED := build/.compiled
SOURCES := setup.py $(wildcard relay/*.py relay/*/*.py relay/*/*.c)
# what `make test` also runs pure (the whole suite runs compiled; tests/bench builds its own
# trees and tests/deploy runs the image: the build under test changes nothing there)
PURE_TESTS ?= tests/unit tests/component tests/integration tests/chaos tests/browser

.PHONY: demo test test-compiled test-pure lint image clean venv bench compiled pure

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	RELAY_PURE=1 $(BIN)/pip install --quiet -e '.[test,dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

$(COMPILED): $(STAMP) $(SOURCES)
	$(MAKE) pure
	$(BIN)/python setup.py --quiet build_ext --inplace
	# (copied from build/ with their old times when unchanged; tests/conftest.py compares times)
	find relay -name '*.so' -exec touch {} +
	touch $(COMPILED)

compiled: $(COMPILED)

pure:
	find relay -name '*.so' -delete
	rm -f ./*__mypyc*.so $(COMPILED)

demo: $(STAMP)
	$(BIN)/python -m relay.demo

# both builds: the whole suite compiled, then $(PURE_TESTS) pure (the tree is left pure)
test: test-compiled test-pure

test-compiled: $(COMPILED)
	$(BIN)/python -m relay --version | grep -q '(compiled)'
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-pure: $(STAMP)
	$(MAKE) pure
	$(BIN)/python -m relay --version | grep -q '(pure)'
	$(BIN)/python -m pytest $(PURE_TESTS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check relay tests bench setup.py
	$(BIN)/mypy

# benchmark suite (bench/run.py): direct vs HAProxy vs relay, about 14 minutes; BENCH_ARGS=--quick
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

image: $(STAMP)
	bash .ci/image.sh

clean: pure
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
