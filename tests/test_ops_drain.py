"""Streaming drain: at shutdown a streaming response's app hears http.disconnect at once, so an SSE
stream finishes cleanly instead of being cut at the end of the graceful window."""

from __future__ import annotations

import importlib.util
import signal
import socket
import time

import pytest

from .helpers import read_until_closed


def open_stream(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in first, first
    return sock


def stop_and_read(server, sock: socket.socket) -> tuple[bytes, float]:
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    rest = read_until_closed(sock, 10)
    sock.close()
    assert server.proc.wait(10) == 0
    return rest, time.monotonic() - signalled


def test_sse_app_finishes_its_stream_at_shutdown(serve, impl):
    http, loop = impl
    server = serve("apps.ops:app", "--http", http, "--loop", loop)
    sock = open_stream(server.port, "/sse")
    time.sleep(0.3)
    rest, elapsed = stop_and_read(server, sock)
    # The app's own last event, then the chunked body's proper end; long before the 30 s graceful timeout.
    assert b"event: bye" in rest and rest.endswith(b"0\r\n\r\n"), rest[-200:]
    assert elapsed < 5, elapsed
    assert "ERROR" not in server.output and "timed out" not in server.output


def test_app_returning_after_the_notice_gets_its_stream_ended(serve, impl):
    http, loop = impl
    server = serve("apps.ops:app", "--http", http, "--loop", loop)
    sock = open_stream(server.port, "/sse-return")
    rest, elapsed = stop_and_read(server, sock)
    assert rest.endswith(b"0\r\n\r\n"), rest
    assert elapsed < 5 and "ERROR" not in server.output


def test_sse_starlette_stream_ends_cleanly_at_shutdown(serve, impl):
    if importlib.util.find_spec("sse_starlette") is None:
        pytest.skip("SKIPPED LOUDLY: sse-starlette is not installed (pip install -e '.[dev]')")
    http, loop = impl
    server = serve("apps.ops_sse:app", "--http", http, "--loop", loop)
    sock = open_stream(server.port, "/sse")
    time.sleep(0.3)
    rest, elapsed = stop_and_read(server, sock)
    assert b"data: tick" in rest and rest.endswith(b"0\r\n\r\n"), rest[-200:]
    assert elapsed < 5 and "ERROR" not in server.output, server.output
