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


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_work_after_the_response_finishes_before_the_exit(serve, tmp_path, http2):
    """A response sent, the app goes on (Starlette's BackgroundTasks) and its client has gone:
    the stop waits for it, as for a connection, instead of letting it die with the loop."""
    server = serve("apps.after_response:app")
    mark = tmp_path / "mark"
    with httpx.Client(http1=not http2, http2=http2) as client:
        response = client.get(server.url, params={"t": "1", "mark": str(mark)}, timeout=10)
    assert response.text == "sent" and response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert mark.read_text() == "done"
    assert time.monotonic() - started < 5
    server.stop()
    assert "Waiting for 1 app(s) still running after their response" in server.output


def test_work_after_the_response_is_cancelled_at_the_graceful_timeout(serve, tmp_path):
    server = serve("apps.after_response:app", "--timeout-graceful-shutdown", "1")
    mark = tmp_path / "mark"
    assert httpx.get(server.url, params={"t": "60", "mark": str(mark)}, timeout=10).text == "sent"
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert 0.8 < time.monotonic() - started < 5
    assert mark.read_text() == "cancelled"  # the app's cleanup ran
    server.stop()
    output = server.output
    assert "Graceful shutdown timed out; cancelling 1 app(s) still running" in output
    assert "Traceback" not in output
