"""A response that ends the connection because the client asked (``Connection: close``, HTTP/1.0
without keep-alive) leaves in one TCP segment with the FIN (HeldWriter.close_with_fin: TCP_CORK
before the write, and the close sends both). A close the server decides, on a connection a client
may still be pipelining on, closes as before: a close with unread input resets the connection,
and a corked response would then never leave.

In process (both parsers, both loops): when the socket is corked. End to end (a real server, a
real socket): the segments the client receives."""

from __future__ import annotations

import socket
import struct
import sys
import time

import pytest

from fastserve.batching import TCP_CORK

from .harness import IMPL_IDS, IMPLS, Connection, connection_runner, parse_responses
from .test_inprocess_http import HELLO, hello

pytestmark = pytest.mark.skipif(TCP_CORK is None, reason="TCP_CORK is Linux-only: other systems close as before")

EAGER_START = sys.version_info >= (3, 12)  # an app Task's first step runs in its creation (new_task)


async def app_closes(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"connection", b"close")]})
    await send({"type": "http.response.body", "body": HELLO})


class RecordingSocket:
    """What get_extra_info("socket") gives: records each setsockopt with the number of writes made
    on the transport before it (a cork must come before the response is written)."""

    def __init__(self, transport, error: OSError | None = None) -> None:
        self.transport = transport
        self.error = error
        self.calls: list[tuple[int, int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.calls.append((level, option, value, len(self.transport.writes)))
        if self.error is not None:
            raise self.error


@pytest.fixture(params=IMPLS, ids=IMPL_IDS)
def run(request):
    return connection_runner(*request.param)


def exchange(run, app, data: bytes, *, error: OSError | None = None, tls: bool = False, **transport_extra):
    async def scenario(conn: Connection):
        sock = conn.transport.extra["socket"] = RecordingSocket(conn.transport, error)
        if tls:
            conn.state.tls = object()  # what a server serving TLS has (only "is None" is read here)
        conn.feed(data)
        await conn.settle()
        return sock.calls, conn.transport, parse_responses(conn.transport.data)

    return run(app, scenario, **({"transport_extra": transport_extra} if transport_extra else {}))


CORKED = [(socket.IPPROTO_TCP, TCP_CORK, 1, 0)]  # before the response's one write


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
], ids=["connection-close", "http-1.0"])
def test_the_response_to_a_client_asking_to_close_is_corked_then_closed(run, request_bytes):
    calls, transport, responses = exchange(run, hello, request_bytes)
    assert [r.body for r in responses] == [HELLO] * len(responses) and responses
    assert transport.closing and not transport.late and not transport.aborted
    last_write = len(transport.writes) - 1
    assert calls == [(socket.IPPROTO_TCP, TCP_CORK, 1, last_write)]


def test_a_close_the_server_decides_is_not_corked(run):
    calls, transport, responses = exchange(run, app_closes, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r.body for r in responses] == [HELLO] and responses[0].closes
    assert transport.closing and calls == []


def test_a_keep_alive_response_is_neither_corked_nor_closed(run):
    calls, transport, responses = exchange(run, hello, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r.body for r in responses] == [HELLO]
    assert not transport.closing and calls == []


def test_tls_and_unix_sockets_are_not_corked(run):
    close = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    calls, transport, responses = exchange(run, hello, close, tls=True)
    assert calls == [] and transport.closing and [r.body for r in responses] == [HELLO]
    calls, transport, responses = exchange(run, hello, close, peername="", sockname="/tmp/fastserve.sock")
    assert calls == [] and transport.closing and [r.body for r in responses] == [HELLO]


def test_a_refused_cork_still_sends_the_response_and_closes(run):
    calls, transport, responses = exchange(
        run, hello, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", error=OSError(95, "not supported"),
    )
    assert len(calls) == 1 and [r.body for r in responses] == [HELLO] and transport.closing


def test_the_last_request_of_a_keep_alive_connection_asking_to_close_is_corked(run):
    async def scenario(conn: Connection):
        sock = conn.transport.extra["socket"] = RecordingSocket(conn.transport)
        conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await conn.settle()
        assert sock.calls == [] and not conn.closed
        conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await conn.settle()
        return sock.calls, conn.transport, parse_responses(conn.transport.data)

    calls, transport, responses = run(hello, scenario)
    assert [r.body for r in responses] == [HELLO, HELLO] and transport.closing
    assert calls == [(socket.IPPROTO_TCP, TCP_CORK, 1, len(transport.writes) - 1)]


def test_a_request_pipelined_after_the_close_request_is_never_left_in_the_kernel_under_a_cork(run):
    # A close with input left unread in the kernel resets the connection, and a corked response
    # would never leave. Input after a request that closes is never parsed (llhttp stops at it;
    # h11 holds it). If the parser saw it before the response was complete (the app runs in a Task
    # of its own, after the read), the connection closes lingeringly: shuts down its write side,
    # reads and drops input; no cork. Where the app answers inside the read (Python 3.12+: eager
    # Task start; on 3.11 a keep-alive connection's later requests), the close comes first: those
    # bytes were read with the request, so the kernel holds nothing unread and the close sends the
    # FIN, corked.
    calls, transport, responses = exchange(
        run, hello, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert [r.body for r in responses] == [HELLO]
    if EAGER_START:
        assert calls == CORKED and transport.closing
    else:  # (a new connection's first request runs in a new Task, after the read)
        assert calls == [] and transport.eof_written and not transport.closing


def test_a_socket_that_cannot_be_asked_still_gets_the_response_and_the_close(run):
    async def scenario(conn: Connection):
        def get_extra_info(name, default=None):
            if name == "socket":
                raise OSError(9, "Bad file descriptor")  # (uvloop asks the socket its name)
            return conn.transport.extra.get(name, default)

        conn.transport.get_extra_info = get_extra_info
        conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await conn.settle()
        return conn.transport, parse_responses(conn.transport.data)

    transport, responses = run(hello, scenario)
    assert [r.body for r in responses] == [HELLO] and transport.closing and not transport.late


# -- end to end: the segments a client receives -------------------------------------------------
TCP_INFO_SEGS_IN = 140  # struct tcp_info: tcpi_segs_in (Linux 4.2+)
TCP_INFO_DATA_SEGS_IN = 152  # tcpi_data_segs_in (Linux 4.6+)


def segments_without_data(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request``, read to the end of the connection; (segments received that carried no
    data, the bytes read). The handshake and the ACKs are the same for every request here; what
    differs is whether the FIN came alone or with the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        time.sleep(0.05)  # (anything still in flight to this socket arrives)
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    segs_in, = struct.unpack_from("I", info, TCP_INFO_SEGS_IN)
    data_segs_in, = struct.unpack_from("I", info, TCP_INFO_DATA_SEGS_IN)
    return segs_in - data_segs_in, data


@pytest.mark.two_impls
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's struct tcp_info")
def test_the_fin_comes_with_the_response_when_the_client_asked_to_close(serve, impl):
    http, loop = impl
    server = serve("apps.basic:app", "--http", http, "--loop", loop)
    corked = [segments_without_data(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
              for _ in range(3)]
    http10 = [segments_without_data(server.port, b"GET / HTTP/1.0\r\n\r\n") for _ in range(3)]
    server_closes = [segments_without_data(server.port, b"GET /app-closes HTTP/1.1\r\nHost: x\r\n\r\n")
                     for _ in range(3)]
    for _, data in corked + http10:
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"Hello, world!")
    for _, data in server_closes:
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"closing")
    # One segment less without data: the FIN rode on the response.
    alone = min(count for count, _ in server_closes)
    assert [count for count, _ in corked + http10] == [alone - 1] * 6, (corked, http10, server_closes)
