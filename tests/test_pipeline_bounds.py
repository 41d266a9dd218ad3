"""Pipelining bounds, in process: a real HTTPProtocol, real parser adapters and a real event loop;
a transport that records writes and whether reading is paused. What a burst of pipelined requests
may cost per event-loop iteration, and how many of them may wait parsed, is exact here (the
real-server tests in test_hostile_http.py measure the effects: latency, memory, order)."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastserve.config import Config
from fastserve.http1.connection import FEED_DIRECT, REQUESTS_PER_TURN, HTTPProtocol
from fastserve.http1.h11_parser import H11Parser
from fastserve.http1.httptools_parser import HttptoolsParser
from fastserve.server import ServerState

PARSERS = {"httptools": HttptoolsParser, "h11": H11Parser}
COUNT = 5000
BURST = b"".join(b"GET /?%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(COUNT))


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.closing = False

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data) -> None:
        self.written += data

    def writelines(self, items) -> None:
        for data in items:
            self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class App:
    """Answers with the query string and the request body; with a gate, every request waits for
    it first; a query ending in "y" awaits once (its response then completes from a Task)."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate
        self.started = 0

    async def __call__(self, scope, receive, send) -> None:
        self.started += 1
        if self.gate is not None:
            await self.gate.wait()
        query = scope["query_string"]
        if query.endswith(b"y"):
            await asyncio.sleep(0)
        body = b""
        if scope["method"] == "POST":
            more = True
            while more:
                message = await receive()
                body += message["body"]
                more = message["more_body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": query + body})


def connect(parser: str, app: App) -> tuple[HTTPProtocol, RecordingTransport]:
    config = Config(app="unused")
    conn = HTTPProtocol(config, app, ServerState(config, {}, None, None), PARSERS[parser], asyncio.get_running_loop())
    transport = RecordingTransport()
    conn.connection_made(transport)
    return conn, transport


async def answered_in_order(transport: RecordingTransport, count: int, expected: list[bytes] | None = None) -> None:
    for _ in range(20 * count):
        if transport.written.count(b"HTTP/1.1 200") >= count:
            break
        await asyncio.sleep(0)
    assert bodies(bytes(transport.written)) == (expected if expected is not None else [b"%d" % i for i in range(count)])


def bodies(data: bytes) -> list[bytes]:
    """The body of each response in data (they all have a content-length)."""
    found = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\r\n\r\n", pos) + 4
        length = int(re.search(rb"content-length: (\d+)\r\n", data[pos:end]).group(1))
        found.append(data[end:end + length])
        pos = end + length
    return found


@pytest.mark.parametrize("parser", PARSERS)
def test_a_burst_is_answered_a_bounded_number_of_requests_per_loop_iteration(parser):
    async def main() -> None:
        app = App()
        conn, transport = connect(parser, app)
        conn.data_received(BURST)
        # One read of 5,000 requests: the app ran for one turn's share, the rest waits unread.
        assert app.started <= REQUESTS_PER_TURN
        assert not transport.reading
        await asyncio.sleep(0)
        assert app.started <= 2 * REQUESTS_PER_TURN
        await answered_in_order(transport, COUNT)
        assert transport.reading

    asyncio.run(main())


@pytest.mark.parametrize("parser", PARSERS)
def test_requests_behind_a_waiting_one_stay_unparsed(parser):
    async def main() -> None:
        gate = asyncio.Event()
        app = App(gate)
        conn, transport = connect(parser, app)
        conn.data_received(BURST)
        for _ in range(20):
            await asyncio.sleep(0)
        # The first request waits in its Task; at most one turn's share of the others is parsed
        # (httptools queues them; h11 holds their bytes); the rest is kept unread, reading paused.
        assert app.started == 1
        assert len(conn.pipeline) < REQUESTS_PER_TURN
        assert not transport.reading
        gate.set()
        await answered_in_order(transport, COUNT)
        assert transport.reading

    asyncio.run(main())


# A request: (POST body or None for a GET, chunked?, awaits once?). Bodies hold CRLF CRLF, which the
# server counts as request heads when it shares a large read out: shares then end inside bodies.
requests_st = st.lists(
    st.tuples(st.one_of(st.none(), st.binary(max_size=40).map(lambda b: b + b"\r\n\r\n" * len(b))), st.booleans(), st.booleans()),
    min_size=70, max_size=150,
)


@pytest.mark.parametrize("parser", PARSERS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(requests=requests_st, tail=st.integers(min_value=0, max_value=3))
def test_pipelined_requests_in_one_large_read_are_answered_in_order(parser, requests, tail):
    """Any mix of GETs and POSTs (Content-Length or chunked), some answered at once and some from
    a Task, in one read large enough to be shared out over several loop iterations: every request
    is answered, in order, with its own body."""
    wire, expected = [], []
    for i, (body, chunked, awaits) in enumerate(requests):
        query = b"%d%s" % (i, b"y" if awaits else b"n")
        if body is None:
            wire.append(b"GET /?%s HTTP/1.1\r\nHost: x\r\n\r\n" % query)
            body = b""
        elif chunked:
            pieces = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:tail], body[tail:]) if p)
            wire.append(b"POST /?%s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (query, pieces))
        else:
            wire.append(b"POST /?%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (query, len(body), body))
        expected.append(query + body)
    data = b"".join(wire)
    assert len(data) > FEED_DIRECT

    async def main() -> None:
        conn, transport = connect(parser, App())
        conn.data_received(data)
        await answered_in_order(transport, len(expected), expected)

    asyncio.run(main())
