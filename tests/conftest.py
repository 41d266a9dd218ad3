from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from .helpers import IMPL_IDS, IMPLS, ServerProcess
from .process_tree import Supervised

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# The end-to-end combinations kept for tests marked two_impls (each parser, each loop once).
TWO_IMPLS = {("httptools", "uvloop"), ("h11", "asyncio")}


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run long soak/flood tests (make soak)")


def pytest_collection_modifyitems(config, items):
    _end_to_end_on_two_impls(config, items)
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long run: use `make soak`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=IMPLS, ids=IMPL_IDS)
def impl(request):
    """(http parser, event loop): every behaviour must hold on all four combinations."""
    return request.param


@pytest.fixture(params=IMPLS, ids=IMPL_IDS, scope="module")
def module_impl(request):
    return request.param


@pytest.fixture(scope="module")
def basic_server(module_impl):
    """One server per module and implementation, serving tests/apps/basic.py."""
    http, loop = module_impl
    server = ServerProcess("apps.basic:app", "--http", http, "--loop", loop, "--timeout-keep-alive", "5")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def serve():
    """Start servers with custom arguments; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(app: str, *args: str, **kwargs) -> ServerProcess:
        server = ServerProcess(app, *args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url():
    """A throw-away redis-server for the channels_redis tests (WebSocket and --workers scale-out)."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip(f"SKIPPED LOUDLY: redis-server not found at {REDIS_SERVER}; install it "
                    "(apt-get install redis-server, or `make system-deps` as root) to run the channels_redis tests")
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start: {proc.stdout.read().decode(errors='replace')}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def supervised():
    """Start supervisor process trees (reload, workers, gunicorn); fail if any process is left."""
    tracker = Supervised()
    yield tracker.start
    problems = tracker.cleanup()
    assert not problems, "\n".join(problems)


def _end_to_end_on_two_impls(config, items):
    """Tests marked two_impls check, end to end, behaviour that does not depend on the event loop
    and that the in-process suites (tests/test_inprocess_*.py) check on all four combinations:
    they run on TWO_IMPLS only."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        impl = None
        if callspec is not None:
            impl = callspec.params.get("module_impl", callspec.params.get("impl"))
        if impl is not None and tuple(impl) not in TWO_IMPLS and item.get_closest_marker("two_impls"):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
