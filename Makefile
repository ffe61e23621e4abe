# rolesanywhere-signer — every target does its own set-up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench wheel-check clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system.sh
	bash scripts/install-system.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[pkcs11,tpm,boto3,test,bench,lint]'
	touch $(STAMP)

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy src tests

# CI: the built wheel, installed (not editable) into a fresh venv, gets credentials end to end
wheel-check: install
	$(PY) scripts/check_wheel.py

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
