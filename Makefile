# fastserve: `make run` serves the example app on 127.0.0.1:8000; `make test` runs the test suite.
# Both create .venv on first use. Tools the tests need beyond Python (redis-server, curl, chromium,
# wrk) are installed with apt-get when running as root; otherwise the tests needing them skip loudly.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# command:package pairs the tests use (haproxy: PROXY protocol; systemd-socket-activate: socket activation)
SYSTEM_PACKAGES := redis-server:redis-server curl:curl chromium:chromium wrk:wrk haproxy:haproxy systemd-socket-activate:systemd strace:strace nghttp:nghttp2-client h2load:nghttp2-client
PYTEST_ARGS ?=
# make test runs the suite in this many pytest-xdist processes, one test file per process at a time
# (most tests wait on a server far more than they compute); PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2

.PHONY: run test test-newer-python compiled test-compiled lint bench soak system-deps clean

run: $(VENV)/.installed
	@echo "==> Serving the example app on http://$(HOST):$(PORT) (another port: make run PORT=8001)"
	$(BIN)/fastserve fastserve.examples.hello:app --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev system-deps
	@echo "==> Running the test suite (about 5 minutes on a 2-core machine; make test PYTEST_ARGS='tests/test_cli.py -x' for one file)"
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-compiled
	@$(MAKE) --no-print-directory test-newer-python

# On Python 3.12+ an app's first step runs inside Task creation (eager start), so the order of
# what a server does around starting an app differs from 3.11's: the tests of those paths run
# again on the newest Python 3.12+ found (python3.X on PATH, else pyenv), in $(VENV_NEW).
NEWER_PYTHON ?= $(shell for v in 3.14 3.13 3.12; do \
	p=$$(command -v python$$v 2>/dev/null) && $$p -V >/dev/null 2>&1 && { echo $$p; exit; }; \
	d=$$(pyenv prefix $$v 2>/dev/null) && [ -x "$$d/bin/python" ] && { echo "$$d/bin/python"; exit; }; \
	done)
VENV_NEW ?= .venv-newer
EAGER_START_TESTS := tests/test_app_task.py tests/test_app_runner.py tests/test_asgi_messages.py \
	tests/test_inprocess_http.py tests/test_inprocess_websocket.py tests/test_inprocess_ws_carrier.py \
	tests/test_inprocess_ws_extended_connect.py tests/test_h2_connection.py tests/test_h2_websocket.py \
	tests/test_h2_websocket_live.py tests/test_websocket.py tests/test_server_hostile.py tests/test_shutdown.py \
	tests/test_close_with_fin.py

test-newer-python:
	@if [ -z "$(NEWER_PYTHON)" ]; then \
		echo "SKIPPED LOUDLY: no Python 3.12+ found (python3.12-3.14 on PATH, or pyenv): the eager-start paths are NOT TESTED"; \
		exit 0; \
	fi; \
	echo "==> The app-start paths again on $$($(NEWER_PYTHON) -V) (eager Task start; about a minute)"; \
	$(MAKE) --no-print-directory $(VENV_NEW)/.installed-dev VENV=$(VENV_NEW) PYTHON=$(NEWER_PYTHON) && \
	$(VENV_NEW)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(EAGER_START_TESTS)

# The compiled build (setup.py: the hot path through mypyc, as a wheel or `pip install .` builds
# it), in a tree of its own, so that the editable install in $(VENV) keeps running the .py files as
# edited. Rebuilt when a source changes (benchmarks/compiled.py, as the benchmarks build theirs;
# an unchanged tree takes its extensions from that build cache); PYTHONPATH=$(COMPILED)/src runs it.
COMPILED ?= .compiled
COMPILED_SOURCES := setup.py pyproject.toml README.md $(shell find src -name '*.py' 2>/dev/null)

$(COMPILED)/.built: $(COMPILED_SOURCES) | $(VENV)/.installed-dev
	@echo "==> Compiling the hot path with mypyc into $(COMPILED)/ (about half a minute)"
	rm -rf $(COMPILED)
	$(BIN)/python -m benchmarks.compiled $(COMPILED)
	touch $@

compiled: $(COMPILED)/.built

# What make test runs again on the compiled build (about 2 minutes): what the compiled modules do,
# in process and against a real server (HTTP/1.1 and the HTTP/2 core, WebSocket upgrades, the
# operations subclasses, Starlette/Django). The whole suite passes there too:
# make test-compiled COMPILED_TESTS=tests
COMPILED_TESTS ?= tests/test_compiled.py tests/test_inprocess_http.py tests/test_inprocess_extensions.py \
	tests/test_inprocess_files.py tests/test_inprocess_write_timeout.py tests/test_inprocess_websocket.py \
	tests/test_asgi_messages.py tests/test_response_head.py tests/test_h1_writer.py tests/test_http1_semantics.py \
	tests/test_http.py tests/test_hostile_http.py tests/test_smuggling.py tests/test_fuzz_parsers.py \
	tests/test_pipeline_bounds.py tests/test_bad_input.py tests/test_server_hostile.py tests/test_files.py \
	tests/test_transports.py tests/test_app_task.py tests/test_shutdown.py tests/test_close_with_fin.py \
	tests/test_extensions.py tests/test_websocket_units.py tests/test_h2_connection.py tests/test_h2_websocket.py \
	tests/test_frameworks.py tests/test_websocket_django.py tests/test_ops_proxy_protocol.py \
	tests/test_ops_health.py tests/test_ops_metrics.py tests/test_ops_body_limit.py

# The tests again on the compiled build (FASTSERVE_EXPECT_COMPILED: a test fails unless every
# hot-path module is an extension, so this never passes on the .py files by mistake).
test-compiled: $(COMPILED)/.built system-deps
	@echo "==> The tests again on the compiled hot path ($(COMPILED)/src)"
	FASTSERVE_EXPECT_COMPILED=1 PYTHONPATH=$(abspath $(COMPILED))/src $(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(COMPILED_TESTS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(VENV)/.installed-dev system-deps
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

soak: $(VENV)/.installed-dev system-deps
	$(BIN)/pytest -m slow --run-slow $(PYTEST_ARGS)

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "fastserve needs Python >= 3.10"; exit 1; }
	@echo "==> Creating the virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "==> Installing fastserve into $(VENV) (pip install -e .; about 15 s)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "==> Installing fastserve with the test and benchmark dependencies into $(VENV) (pip install -e '.[dev]'; about 35 s the first time)"
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

system-deps:
	@missing=""; \
	for pair in $(SYSTEM_PACKAGES); do command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing with apt-get:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
		|| echo "WARNING: apt-get could not install$$missing; tests needing them will SKIP"; \
	else \
		echo "WARNING: not installed:$$missing (need root + apt-get); tests needing them will SKIP"; \
	fi

clean:
	rm -rf $(VENV) $(VENV_NEW) $(COMPILED) build dist src/*.egg-info .pytest_cache
