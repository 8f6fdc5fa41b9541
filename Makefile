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

clean:
	rm -rf $(VENV) build *.egg-info
