"""Hostile and careless clients and apps against a real server: the ASGI flush rule, connections
that race a shutdown, running out of file descriptors, a flapping --limit-connections."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from .helpers import read_until_closed


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_streamed_chunk_reaches_client_before_send_returns(serve, impl, framing, tmp_path):
    """ASGI: send() flushes to the transport before it returns, so a chunk sent with more_body
    reaches the client even when the app then blocks the event loop."""
    http, loop = impl
    server = serve("apps.hostile:app", "--http", http, "--loop", loop)
    marker = tmp_path / "got-first-chunk"
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(b"GET /blocking-stream?framing=%s&marker=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                     % (framing.encode(), str(marker).encode()))
        received = b""
        while b"first\n" not in received:
            data = sock.recv(65536)
            assert data, received
            received += data
        marker.touch()  # the app, blocked since the chunk, now finishes the response
        received += read_until_closed(sock, 15)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"released\n" in received and b"timeout!" not in received


def _response_head(sock: socket.socket) -> bytes:
    """Read one response to GET / (body "Hello, world!") and return its head."""
    received = b""
    while not received.endswith(b"Hello, world!"):
        data = sock.recv(65536)
        assert data, received
        received += data
    return received.partition(b"\r\n\r\n")[0].lower()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_connection_accepted_with_the_signal_is_shut_down(serve, loop):
    """A connection accepted in the loop step that handles SIGTERM registers after the shutdown
    told every connection to close: it is told too, not served keep-alive until the graceful
    timeout (10 s here; it took that long before the fix, on asyncio every time)."""
    for http in ("httptools", "h11"):
        server = serve("apps.hostile:app", "--http", http, "--loop", loop,
                       "--timeout-graceful-shutdown", "10", "--timeout-keep-alive", "30")
        in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        in_flight.sendall(b"GET /sleep?t=1 HTTP/1.1\r\nHost: x\r\n\r\n")  # the shutdown waits for it
        blocker = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        blocker.sendall(b"GET /block?t=0.4 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.15)  # the loop is blocked: the signal, then a connection, are both waiting for it
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        late = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        late.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = _response_head(late)
        if loop == "asyncio":
            # uvloop runs the request before the signal handler, as if it came first: then it is
            # answered keep-alive and the connection closed right after (checked below).
            assert b"connection: close" in head
        assert read_until_closed(late, 5) == b""
        assert time.monotonic() - started < 3
        assert server.proc.wait(8) == 0
        assert time.monotonic() - started < 5
        for sock in (in_flight, blocker, late):
            sock.close()
