# Everything a developer or CI runs.  Needs only python3 and make: each target builds its own venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test test-epoll test-selectors lint compat bench bench-quick soak clean

$(STAMP): setup.cfg setup.py requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . -r requirements-test.txt
	touch $(STAMP)

# The whole suite, once on the platform's native poller and once on the selectors fallback.
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS) tests
	TORNADO_LITE_POLLER=selectors $(PY) -m pytest -q $(PYTEST_ARGS) tests

test-epoll: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

test-selectors: $(STAMP)
	TORNADO_LITE_POLLER=selectors $(PY) -m pytest -q $(PYTEST_ARGS) tests

lint: $(STAMP)
	$(PY) -m ruff check tornado_lite
	$(PY) -m mypy tornado_lite
	@if [ -f ../shared/tools/check_layers.py ]; then $(PY) ../shared/tools/check_layers.py . ; fi

# Tornado 6.6.1's own test suite and API snapshot against tornado_lite, on both pollers, in a scratch
# venv where Tornado is only the source of the tests and of the modules tornado_lite does not replace.
# IMPL=tornado runs the same copies on real Tornado (checks the harness and the exclusions).
# COMPAT_ARGS: more options of tests/compat/run_compat.py, e.g. --modules gen,locks --poller selectors.
COMPAT_VENV := .venv-compat
COMPAT_PY := $(COMPAT_VENV)/bin/python
COMPAT_STAMP := $(COMPAT_VENV)/.installed
IMPL ?= lite
COMPAT_ARGS ?=

$(COMPAT_STAMP): setup.cfg setup.py tests/compat/requirements.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install -q --upgrade pip
	$(COMPAT_PY) -m pip install -q -r tests/compat/requirements.txt -e .
	touch $(COMPAT_STAMP)

compat: $(COMPAT_STAMP)
	$(COMPAT_PY) tests/compat/run_compat.py --impl $(IMPL) --report-dir docs/compat $(COMPAT_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
