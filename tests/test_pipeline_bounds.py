"""Pipelining bounds, in process: a real HTTPProtocol, real parser adapters and a real event loop;
a transport that records writes and whether reading is paused. What a burst of pipelined requests
may cost per event-loop iteration, and how many of them may wait parsed, is exact here (the
real-server tests in test_hostile_http.py measure the effects: latency, memory, order)."""

from __future__ import annotations

import asyncio

import pytest

from fastserve.config import Config
from fastserve.http.h11_parser import H11Parser
from fastserve.http.httptools_parser import HttptoolsParser
from fastserve.http.protocol import REQUESTS_PER_TURN, HTTPProtocol
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
    """Answers with the query string; with a gate, every request waits for it first."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate
        self.started = 0

    async def __call__(self, scope, receive, send) -> None:
        self.started += 1
        if self.gate is not None:
            await self.gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["query_string"]})


def connect(parser: str, app: App) -> tuple[HTTPProtocol, RecordingTransport]:
    config = Config(app="unused")
    conn = HTTPProtocol(config, app, ServerState(config, {}, None, None), PARSERS[parser], asyncio.get_running_loop())
    transport = RecordingTransport()
    conn.connection_made(transport)
    return conn, transport


async def answered_in_order(transport: RecordingTransport, count: int) -> None:
    for _ in range(100_000):
        if transport.written.count(b"HTTP/1.1 200") >= count:
            break
        await asyncio.sleep(0)
    bodies = [part.rsplit(b"\r\n\r\n", 1)[1] for part in bytes(transport.written).split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"%d" % i for i in range(count)]


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
