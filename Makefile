# The two commands: `make demo` and `make test`. Both set up what they need first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp

.PHONY: setup test demo clean
# make demo SCENARIO=quality: any scenario of `sentinel demo --help`
SCENARIO ?= errors

setup: $(STAMP)

$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml scripts/install-system-deps.sh
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found; Sentinel needs CPython 3.11 (the Triton stub is built for it)"; exit 1; }
# Debian packages the tests start (chromium, prometheus, promtool, alertmanager); only when one is missing
	@scripts/install-system-deps.sh --check >/dev/null || scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m sentinel.doctor
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: setup
	$(BIN)/sentinel demo --scenario $(SCENARIO)

clean:
	rm -rf $(VENV) results
