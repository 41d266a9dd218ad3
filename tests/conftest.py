from __future__ import annotations

import pytest

from .helpers import IMPL_IDS, IMPLS, ServerProcess


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run long soak/flood tests (make soak)")


def pytest_collection_modifyitems(config, items):
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
