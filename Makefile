# Every target sets itself up: a fresh machine needs only `make run` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SYSTEM := $(VENV)/.system-packages
TNCA_HOME ?= ./tnca-home
PYTEST_ARGS ?=
SOAK_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup run test test-browser test-postgres bench soak lint wheel-smoke clean

setup: $(INSTALLED) $(SYSTEM)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(SYSTEM): scripts/system-packages.sh | $(PY)
	scripts/system-packages.sh
	touch $@

run: setup
	$(VENV)/bin/tnca --home $(TNCA_HOME) dev

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# The operator and auditor pages in Debian's chromium (installed by scripts/system-packages.sh);
# screenshots land in test-artifacts/screenshots/.
test-browser: setup
	$(PY) -m pytest tests/browser $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench.issuance --home $(TNCA_HOME)-bench $(BENCH_ARGS)

# Ten minutes of paced issuance at half the measured capacity; not run in CI (bench/soak.py).
soak: setup
	$(PY) -m bench.soak --home $(TNCA_HOME)-soak $(SOAK_ARGS)

# The package as an operator gets it: sdist, wheel from it, a fresh venv outside the checkout,
# tnca init, tnca serve, an issuance with certbot's acme client, /readyz, /metrics and the JSON
# request log (scripts/wheel-smoke.sh; about a minute, pip's cache makes the installs quick).
wheel-smoke: setup
	scripts/wheel-smoke.sh

lint: setup
	$(PY) -m compileall -q ca acme_server ctlog tnca

clean:
	rm -rf $(VENV) $(TNCA_HOME) .pytest_cache .hypothesis test-artifacts
