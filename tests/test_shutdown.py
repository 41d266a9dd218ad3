"""SIGINT/SIGTERM: stop accepting, finish in-flight requests within the timeout, close idle ones."""

from __future__ import annotations

import signal
import socket
import threading
import time

import httpx
import pytest


def test_in_flight_request_finishes_then_exit_0(serve, impl):
    http, loop = impl
    server = serve("apps.basic:app", "--http", http, "--loop", loop)
    results = []
    worker = threading.Thread(target=lambda: results.append(httpx.get(server.url + "/sleep?t=1", timeout=10)))
    worker.start()
    time.sleep(0.3)
    idle = socket.create_connection(("127.0.0.1", server.port))
    idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.recv(65536)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    idle.settimeout(3)
    assert idle.recv(1) == b""  # the idle keep-alive connection is closed at once
    assert time.monotonic() - started < 0.9
    worker.join()
    assert results[0].status_code == 200 and results[0].text == "slept"
    assert results[0].headers["connection"] == "close"
    assert server.proc.wait(10) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url)


def test_graceful_timeout_bounds_shutdown(serve):
    server = serve("apps.basic:app", "--timeout-graceful-shutdown", "1")
    threading.Thread(target=lambda: _swallow(lambda: httpx.get(server.url + "/sleep?t=30", timeout=40)), daemon=True).start()
    time.sleep(0.3)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 4
    server.wait_for_line("Graceful shutdown timed out")


def test_second_sigint_forces_exit(serve):
    server = serve("apps.basic:app", "--timeout-graceful-shutdown", "60")
    threading.Thread(target=lambda: _swallow(lambda: httpx.get(server.url + "/sleep?t=30", timeout=40)), daemon=True).start()
    time.sleep(0.3)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    server.wait_for_line("Waiting for 1 connection")
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 3


def _swallow(fn):
    try:
        fn()
    except httpx.HTTPError:
        pass
