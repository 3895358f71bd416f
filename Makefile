# The two commands a newcomer needs: `make run` and `make test`.
# Both create .venv when it is missing and install Ragline into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# torch must come from the local CPU wheel before sentence-transformers asks for it,
# otherwise pip resolves the CUDA build (gigabytes).
TORCH := torch==2.13.0
# ragflow-sdk's newer line (0.27) needs Python 3.13; the end-to-end tests run it from its own venv.
# A python3.13 on PATH that does not run (a pyenv shim of another version) does not count.
SDK27 := ragflow-sdk==0.27.3
SDK27_VENV := .venv-sdk27
SDK27_STAMP := $(SDK27_VENV)/.installed-$(subst ==,-,$(SDK27))
PYTHON313 ?= $(shell (python3.13 -c 'import sys' >/dev/null 2>&1 && command -v python3.13) \
	|| ls -d $(HOME)/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | tail -n 1)

.PHONY: run test install install-test sdk27 bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

install-test: $(TEST_STAMP)

# The ragflow-sdk 0.27 venv when a Python 3.13 exists; otherwise say so (those tests then skip).
sdk27:
	@if [ -n "$(PYTHON313)" ]; then $(MAKE) --no-print-directory $(SDK27_STAMP); \
	else echo "No Python 3.13 (PATH, ~/.pyenv/versions/3.13*/bin or PYTHON313=...): the ragflow-sdk 0.27 end-to-end tests will skip."; fi

$(SDK27_STAMP):
	rm -rf $(SDK27_VENV)
	$(PYTHON313) -m venv $(SDK27_VENV)
	$(SDK27_VENV)/bin/pip install --quiet $(SDK27)
	touch $@

run: $(STAMP)
	$(BIN)/ragline serve

test: $(TEST_STAMP) sdk27
	$(BIN)/python -m pytest

bench: $(TEST_STAMP)
	for bench in tests/bench/[a-z]*.py; do $(BIN)/python -m tests.bench.$$(basename $$bench .py) || exit 1; done

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(SDK27_VENV) .pytest_cache
