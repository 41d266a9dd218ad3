"""Hostile and careless clients and apps against a real server: the ASGI flush rule, connections
that race a shutdown, running out of file descriptors, a flapping --limit-connections."""

from __future__ import annotations

import socket

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
