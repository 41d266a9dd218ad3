"""--timeout-write in process: the timer FlowControl arms when writing blocks, on both parsers and
both loops (tests/harness.py's FakeTransport stands in for the socket), and FlowControl's own
rules on a loop whose clock the test moves (no waiting, no timing assumptions).
The end-to-end behaviour, with real sockets that stop reading: tests/test_write_timeout.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from fastserve.asgi.flow import FlowControl
from fastserve.http2 import codec_class
from fastserve.negotiate import h2_takeover

from .harness import IMPL_IDS, IMPLS, FakeTransport, connection_runner, upgrade_request

GET = b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
TIMEOUT_LINE = "(--timeout-write)"


@pytest.fixture(params=IMPLS, ids=IMPL_IDS)
def run(request):
    return connection_runner(*request.param)


def streaming_app(outcome: list):
    """Streams for ever; records the exception its send() raises."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
                await asyncio.sleep(0.01)
        except OSError as exc:
            outcome.append(type(exc).__name__)
            raise

    return app


def pushing_app(outcome: list):
    """A WebSocket app sending messages for ever; records the exception its send() raises."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "bytes": b"x" * 1024})
                await asyncio.sleep(0.01)
        except OSError as exc:
            outcome.append(type(exc).__name__)
            raise

    return app


async def aborted(transport: FakeTransport, within: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while "abort" not in transport.events and loop.time() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # connection_lost, and the app's send() raising
    return "abort" in transport.events


def timeout_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if TIMEOUT_LINE in r.getMessage()]


# -- HTTP/1.1 -------------------------------------------------------------------------------------
def test_a_response_the_client_stops_reading_is_aborted(run, caplog):
    caplog.set_level(logging.INFO, logger="fastserve.error")
    outcome: list = []

    async def scenario(conn):
        conn.feed(GET)
        await conn.settle()
        conn.transport.fill_write_buffer()  # the client stops reading: the app's send() waits
        assert conn.protocol.flow._write_timer is not None
        assert await aborted(conn.transport)
        assert outcome == ["ClientDisconnected"]
        assert not conn.transport.late  # nothing written after the abort
        assert conn.protocol.flow._write_timer is None

    run(streaming_app(outcome), scenario, timeout_write=0.2)
    [line] = timeout_lines(caplog)
    assert "127.0.0.1:50000" in line and "the response to GET /stream was being sent" in line
    assert not any(r.exc_info for r in caplog.records)


def test_resumed_writing_cancels_the_timer(run):
    """One timer per paused connection: a second pause keeps it, resuming cancels it."""
    outcome: list = []

    async def scenario(conn):
        conn.feed(GET)
        await conn.settle()
        flow = conn.protocol.flow
        conn.transport.fill_write_buffer()
        timer = flow._write_timer
        conn.transport.fill_write_buffer()
        assert flow._write_timer is timer
        await asyncio.sleep(0.1)
        conn.transport.drain_write_buffer()
        assert flow._write_timer is None and timer.cancelled()
        await asyncio.sleep(0.4)  # twice --timeout-write
        assert "abort" not in conn.transport.events and not outcome
        conn.transport.disconnect()
        await conn.settle()

    run(streaming_app(outcome), scenario, timeout_write=0.2)


def test_zero_disables_the_write_timeout(run):
    async def scenario(conn):
        conn.feed(GET)
        await conn.settle()
        conn.transport.fill_write_buffer()
        assert conn.protocol.flow._write_timer is None
        await asyncio.sleep(0.3)
        assert "abort" not in conn.transport.events
        conn.transport.disconnect()
        await conn.settle()

    run(streaming_app([]), scenario, timeout_write=0)


def test_a_finished_response_left_unread_is_aborted(run, caplog):
    """The response is complete but the client reads none of it: the connection would otherwise
    wait for ever for its buffer to drain (a close waits for it)."""
    caplog.set_level(logging.INFO, logger="fastserve.error")

    async def hello(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})

    async def scenario(conn):
        conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await conn.settle()
        conn.transport.fill_write_buffer()
        assert await aborted(conn.transport)

    run(hello, scenario, timeout_write=0.2)
    [line] = timeout_lines(caplog)
    assert "its last response was waiting to be read" in line


# -- WebSocket over HTTP/1.1 ---------------------------------------------------------------------
def test_websocket_messages_the_client_stops_reading(run, caplog):
    caplog.set_level(logging.INFO, logger="fastserve.error")
    outcome: list = []

    async def scenario(conn):
        conn.feed(upgrade_request())
        await conn.settle()
        assert conn.transport.data.startswith(b"HTTP/1.1 101 ")
        conn.transport.fill_write_buffer()  # now the session's: the carrier passes it on
        assert conn.session.flow._write_timer is not None
        assert await aborted(conn.transport)
        assert outcome == ["ClientDisconnected"]

    run(pushing_app(outcome), scenario, timeout_write=0.2)
    [line] = timeout_lines(caplog)
    assert "WebSocket messages were being sent" in line
    assert not any(r.exc_info for r in caplog.records)


def test_a_pause_at_the_hand_over_is_watched_by_the_session(run, caplog):
    """Writing paused before the upgrade: the HTTP/1.1 timer stops, the session's takes over
    (one log line: the WebSocket's)."""
    caplog.set_level(logging.INFO, logger="fastserve.error")
    outcome: list = []

    async def scenario(conn):
        http = conn.protocol
        conn.transport.fill_write_buffer()
        assert http.flow._write_timer is not None
        conn.feed(upgrade_request())
        await conn.settle()
        assert http.flow._write_timer is None
        assert conn.session.flow.write_paused and conn.session.flow._write_timer is not None
        assert await aborted(conn.transport)

    run(pushing_app(outcome), scenario, timeout_write=0.2)
    [line] = timeout_lines(caplog)
    assert "WebSocket" in line


# -- h2c: HTTP/2 takes over a paused connection ---------------------------------------------------
H2C_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
)


def test_a_pause_at_the_h2c_upgrade_is_watched_by_http2(run, caplog):
    """The client stopped reading before it upgraded to h2c: the HTTP/1.1 timer stops and the
    HTTP/2 connection's starts (it cannot learn of the pause from the transport: that was said)."""
    caplog.set_level(logging.INFO, logger="fastserve.error")

    async def hello(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})

    async def scenario(conn):
        config = conn.config
        codec = codec_class("h2", config.http2_settings())
        conn.state.h2_takeover = h2_takeover(config, hello, conn.state, conn.loop, codec)
        http = conn.protocol
        conn.transport.fill_write_buffer()
        conn.feed(H2C_UPGRADE)
        await conn.settle()
        h2 = conn.transport.protocol
        assert h2 is not http and http.flow._write_timer is None
        assert h2.flow.write_paused and h2.flow._write_timer is not None
        assert await aborted(conn.transport)

    run(hello, scenario, timeout_write=0.2, http2_codec="h2")
    [line] = timeout_lines(caplog)
    assert "HTTP/2 connection" in line


# -- FlowControl's rules, on a clock the test moves --------------------------------------------------
class Clock:
    """Stands in for an asyncio loop's clock: timers fire when the test moves it past them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = 0.0
        loop.time = lambda: self.now  # type: ignore[method-assign]

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for _ in range(5):
            await asyncio.sleep(0)


def on_moved_clock(scenario):
    """Runs ``scenario(clock, fired)`` on an asyncio loop; ``fired``: when the timeout fired."""

    async def main():
        clock = Clock(asyncio.get_running_loop())
        fired: list[float] = []
        await scenario(clock, fired)

    asyncio.run(main())


def test_progress_rearms_the_timer_and_a_stall_fires_it():
    async def scenario(clock, fired):
        transport = FakeTransport(asyncio.get_running_loop())
        transport.write_buffer_size = 1000
        flow = FlowControl(transport, 1.0, lambda: fired.append(clock.now))
        flow.pause_writing()
        await clock.advance(0.5)
        transport.write_buffer_size = 600  # the client reads, slowly: writing stays paused
        await clock.advance(0.6)
        assert not fired and flow._write_timer is not None  # re-armed at 1.1
        await clock.advance(0.8)
        assert not fired  # 1.9: the second period (from 1.1) is not over
        await clock.advance(0.4)  # 2.3: over, without progress
        assert fired == [pytest.approx(2.3)]
        assert flow._write_timer is None

    on_moved_clock(scenario)


def test_resume_and_connection_lost_cancel_the_timer():
    async def scenario(clock, fired):
        flow = FlowControl(FakeTransport(asyncio.get_running_loop()), 1.0, lambda: fired.append(clock.now))
        flow.pause_writing()
        flow.resume_writing()
        flow.pause_writing()
        flow.connection_lost()
        await clock.advance(5)
        assert not fired and flow._write_timer is None

    on_moved_clock(scenario)


def test_a_writable_wait_runs_the_timer():
    """sendfile writes bypass the transport, which never pauses: the timer runs while writable()
    waits for the socket, and stops when it can take more."""

    async def scenario(clock, fired):
        loop = asyncio.get_running_loop()
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        try:
            while True:  # fill our socket's buffer: it is not writable
                try:
                    ours.send(b"x" * 65536)
                except BlockingIOError:
                    break
            flow = FlowControl(FakeTransport(loop), 1.0, lambda: fired.append(clock.now))
            waiting = asyncio.ensure_future(flow.writable(ours.fileno()))
            await clock.advance(0)  # the wait begins
            await clock.advance(0.5)
            assert flow._write_timer is not None and not fired
            peer.setblocking(False)
            while True:  # the peer reads everything: writable again
                try:
                    if not peer.recv(1 << 20):
                        break
                except BlockingIOError:
                    break
            await asyncio.wait_for(waiting, 5)
            assert flow._write_timer is None
            await clock.advance(5)
            assert not fired
            while True:
                try:
                    ours.send(b"x" * 65536)
                except BlockingIOError:
                    break
            waiting = asyncio.ensure_future(flow.writable(ours.fileno()))
            await clock.advance(0)
            await clock.advance(1.1)  # nothing taken for --timeout-write
            assert fired
            flow.connection_lost()  # (what the owner's abort leads to) wakes the wait
            await asyncio.wait_for(waiting, 5)
        finally:
            ours.close()
            peer.close()

    on_moved_clock(scenario)
