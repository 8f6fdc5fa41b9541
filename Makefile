# Everything a developer or CI runs.  Needs only python3 and make: each target builds its own venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test test-epoll test-selectors lint compat compat-asyncio bench bench-quick bench-wrk soak clean

$(STAMP): setup.cfg setup.py requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . -r requirements-test.txt
	touch $(STAMP)

# The whole suite, once on the platform's native poller and once on the selectors fallback.
# tests/http_layer runs Tornado's HTTP layer through install(), which is process-wide: it runs in a
# process of its own, started the way a user starts a Tornado app on tornado_lite.
HTTP_TESTS := tests/http_layer

test: test-epoll test-selectors

test-epoll: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS) tests
	$(PY) -m tornado_lite -m pytest -q $(PYTEST_ARGS) $(HTTP_TESTS)

test-selectors: $(STAMP)
	TORNADO_LITE_POLLER=selectors $(PY) -m pytest -q $(PYTEST_ARGS) tests
	TORNADO_LITE_POLLER=selectors $(PY) -m tornado_lite -m pytest -q $(PYTEST_ARGS) $(HTTP_TESTS)

lint: $(STAMP)
	$(PY) -m ruff check tornado_lite
	$(PY) -m mypy tornado_lite
	@if [ -f ../shared/tools/check_layers.py ]; then $(PY) ../shared/tools/check_layers.py . ; fi

# Tornado 6.6.1's own test suite and API snapshot against tornado_lite, on both pollers, in a scratch
# venv where Tornado is the source of the tests and the HTTP layer that runs on tornado_lite: the core
# modules' tests as rewritten copies, the HTTP layer's unmodified, all under python -m tornado_lite -m
# pytest; then the asyncio-excluded tests again on the asyncio bridge (tests/compat/README.md).
# IMPL=tornado runs the same tests on real Tornado (checks the harness and the exclusions).
# COMPAT_ARGS: more options of tests/compat/run_compat.py, e.g. --part http --modules web --poller selectors.
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
	@if [ "$(IMPL)" = lite ]; then $(MAKE) --no-print-directory compat-asyncio; fi

# CPython's own asyncio tests (test.test_asyncio: tasks, locks, queues, timeouts, wait_for, task groups,
# runners, futures, the loop API ...) on tornado_lite's loop through the asyncio bridge's policy, on both
# pollers.  Skips with a message where the Python build leaves test.test_asyncio out.
compat-asyncio: $(COMPAT_STAMP)
	$(COMPAT_PY) tests/compat/run_asyncio_compat.py --report docs/compat/asyncio-compat-report.md
	TORNADO_LITE_POLLER=selectors $(COMPAT_PY) tests/compat/run_asyncio_compat.py \
		--report docs/compat/asyncio-compat-report-selectors.md

# The benchmark suite (benchmarks/README.md): tornado_lite next to Tornado on asyncio, Tornado on uvloop and
# asyncio streams, in its own venv (tornado/uvloop are there for comparison only).  Results go to
# bench-results/ (results.md, results.json, ratios.png); the table is also printed.  bench-quick takes under
# a minute.  BENCH_ARGS: more options of benchmarks/run.py, e.g. --stacks tornado,tornado_lite --scenarios bulk.
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS ?=

$(BENCH_STAMP): setup.cfg setup.py benchmarks/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install -q --upgrade pip
	$(BENCH_PY) -m pip install -q -r benchmarks/requirements.txt -e .
	touch $(BENCH_STAMP)

# The HTTP rows' load generator: wrk, from the system's packages when it is missing and we may install it
# (root with apt-get); otherwise run.py falls back to benchmarks/http_loadgen.py and says so in its notes.
bench-wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing wrk (apt-get) for the HTTP benchmarks"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null 2>&1 \
	      || echo "could not install wrk: the HTTP rows use benchmarks/http_loadgen.py"; \
	  else echo "wrk is not installed (apt-get install wrk): the HTTP rows use benchmarks/http_loadgen.py"; fi; }

bench: $(BENCH_STAMP) bench-wrk
	$(BENCH_PY) benchmarks/run.py $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(BENCH_PY) benchmarks/run.py --quick $(BENCH_ARGS)

# A bounded soak (tests/faults/soak.py): one tornado_lite server process under a mix of normal and faulty
# clients for SOAK_SECONDS (default 60).  Prints connections, verified bytes, errors by kind, peak RSS and fds;
# fails on any lost or corrupted byte, leaked fd, or RSS growth over 10% after the warm-up.
SOAK_SECONDS ?= 60

soak: $(STAMP)
	$(PY) tests/faults/soak.py --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) build *.egg-info
