"""The WebSocket session against its carrier contract alone: no transport and no HTTP parser, a
list standing in for the wire (what an HTTP/2 stream carrier would see, RFC 8441).

The session is built as websocket.upgrade_handler builds it, but with a recording carrier; what
it decides (accept with headers, refuse, deny, frames, end, abort) is asserted as calls.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import copy_context
from types import SimpleNamespace

import pytest

from fastserve.asgi.errors import ClientDisconnected
from fastserve.asgi.flow import FlowControl
from fastserve.config import Config
from fastserve.server import ServerState
from fastserve.websocket.session import FRAME_BUDGET, SessionSettings, WebSocketSession

from .harness import CLOSE, TEXT, WS_KEY, client_frame, close_payload, server_frames, upgrade_head


class RecordingCarrier:
    """A WebSocketCarrier that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.reading = True

    def accept(self, headers):
        self.calls.append(("accept", dict((name.lower(), value) for name, value in headers)))

    def deny(self, status, headers, body):
        self.calls.append(("deny", status, headers, body))

    def refuse(self, status, reason, headers=()):
        self.calls.append(("refuse", status, reason, list(headers)))

    def write(self, data):
        self.calls.append(("write", data))

    def end(self):
        self.calls.append(("end",))

    def abort(self):
        self.calls.append(("abort",))

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def is_closing(self):
        return False

    def get_write_buffer_size(self):
        return 0

    def kinds(self) -> list[str]:
        return [call[0] for call in self.calls]

    def frames(self) -> list[tuple[int, bool, bytes]]:
        return server_frames(b"".join(call[1] for call in self.calls if call[0] == "write"))


def start_session(app, headers=None, **options):
    config = Config(app="tests.harness:unused", **options)
    state = ServerState(config, {}, None, None)
    carrier = RecordingCarrier()
    conn = SimpleNamespace(loop=asyncio.get_running_loop(), app=app, state=state, config=config, context=copy_context(),
                           server=("127.0.0.1", 8000), tls=None, flow=FlowControl(None))
    if headers is None:
        headers = [(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                   (b"sec-websocket-key", WS_KEY), (b"sec-websocket-version", b"13")]
    request = upgrade_head("/ws", b"/ws", b"", headers, "1.1", ("127.0.0.1", 5000), "http")
    session = WebSocketSession(conn, request, SessionSettings(config), carrier)
    session.start(request, b"")
    return session, carrier


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def echo(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept", "subprotocol": None, "headers": [(b"x-app", b"1")]})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send({"type": "websocket.send", "text": message["text"]})


def test_accept_echo_and_close_through_the_carrier():
    async def scenario():
        session, carrier = start_session(echo)
        await turns()
        kind, headers = carrier.calls[0]
        assert kind == "accept"
        assert headers[b"sec-websocket-accept"] == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert headers[b"x-app"] == b"1"
        session.feed(client_frame(TEXT, b"hello"))
        await turns()
        assert carrier.frames() == [(TEXT, True, b"hello")]
        session.feed(client_frame(CLOSE, close_payload(1000)))
        await turns()
        assert carrier.frames()[-1] == (CLOSE, True, close_payload(1000))
        assert carrier.kinds()[-1] == "end"  # websockets' SEND_EOF: the server ends its side
        session.lost(None)
        await turns()
        assert session.disconnect == {"type": "websocket.disconnect", "code": 1000, "reason": ""}
        assert session not in session.state.connections

    asyncio.run(scenario())


@pytest.mark.parametrize("version, status", [(b"8", 426), (b"13", 400)])
def test_refusals_are_decisions_the_carrier_renders(version, status):
    async def never_called(scope, receive, send):
        raise AssertionError("the app must not run for an invalid handshake")

    async def scenario():
        headers = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"), (b"sec-websocket-version", version)]
        if version == b"8":
            headers.append((b"sec-websocket-key", WS_KEY))
        session, carrier = start_session(never_called, headers)
        await turns()
        assert carrier.kinds() == ["refuse"]
        _, got, reason, extra = carrier.calls[0]
        assert got == status and reason.startswith("Invalid WebSocket handshake")
        if status == 426:
            assert (b"sec-websocket-version", b"13") in extra
        session.lost(None)

    asyncio.run(scenario())


def test_denial_goes_to_the_carrier_whole():
    async def deny(scope, receive, send):
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"no")]})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})

    async def scenario():
        session, carrier = start_session(deny, server_header=False, date_header=False)
        await turns()
        assert carrier.calls == [("deny", 401, [(b"x-why", b"no")], b"no entry")]
        session.lost(None)
        await turns()

    asyncio.run(scenario())


def test_shutdown_before_accept_is_a_503_and_abort_drops_the_carrier():
    async def slow(scope, receive, send):
        await receive()
        await asyncio.sleep(3600)

    async def scenario():
        session, carrier = start_session(slow)
        await turns()
        session.shutdown()
        assert carrier.calls[0][:2] == ("refuse", 503)
        assert (b"retry-after", b"1") in carrier.calls[0][3]
        session.abort()
        assert carrier.kinds()[-1] == "abort"
        await turns()

    asyncio.run(scenario())


# -- the app runner's failure taxonomy (asgi/app_runner.py), as the WebSocket session applies it --
def failing_app(how):
    async def app(scope, receive, send):
        await receive()
        if how == "invalid":  # a header value the server refuses to send
            await send({"type": "websocket.accept", "headers": [(b"x-bad", b"a\r\nb")]})
        await send({"type": "websocket.accept"})
        if how == "crash":
            raise ValueError("boom")
        if how == "gone":
            raise ClientDisconnected("went away")
        await asyncio.sleep(3600)  # "cancelled": until the shutdown timeout aborts the session

    return app


@pytest.mark.parametrize("how, lines, calls", [
    ("invalid", [("ERROR", "Invalid response from the ASGI app: ", False)], ["refuse"]),
    ("crash", [("ERROR", "Exception in ASGI application", True)], ["accept", "write"]),
    ("gone", [("DEBUG", "WebSocket app stopped after the client left: ", False)], ["accept"]),
    ("cancelled", [], ["accept", "abort"]),
])
def test_one_failure_taxonomy_one_log_line(caplog, how, lines, calls):
    caplog.set_level(logging.DEBUG, logger="fastserve.error")

    async def scenario():
        session, carrier = start_session(failing_app(how))
        await turns()
        if how == "cancelled":
            assert session.task is not None
            session.abort()
            await turns()
            assert session.task is None  # the cancelled app settled (one abort, not two)
        got = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
        assert len(got) == len(lines), got
        assert [(level, message[: len(want)], tb) for (level, message, tb), (_, want, _) in zip(got, lines, strict=True)] == lines
        assert carrier.kinds() == calls
        if how == "invalid":
            assert carrier.calls[0][1] == 500
        elif how == "crash":
            assert carrier.frames() == [(CLOSE, True, close_payload(1011))]
        session.lost(None)
        await turns()
        assert session not in session.state.connections

    asyncio.run(scenario())


# -- reading pauses: the session's FlowControl reasons, as the carrier sees them ----------------
def gated_echo(gate, log):
    """Accepts once ``gate`` is done, then echoes text, recording what it receives."""

    async def app(scope, receive, send):
        await receive()
        await gate
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            log.append(message["text"])
            await send({"type": "websocket.send", "text": message["text"]})

    return app


def test_a_flood_in_one_read_is_parsed_over_several_turns_in_order():
    async def scenario():
        gate = asyncio.get_running_loop().create_future()
        gate.set_result(None)
        log = []
        session, carrier = start_session(gated_echo(gate, log), ws_max_queue=10_000)
        await turns()
        texts = [b"m%d" % i for i in range(3 * FRAME_BUDGET)]
        session.feed(b"".join(client_frame(TEXT, text) for text in texts))
        assert not carrier.reading and len(session.inbox) == FRAME_BUDGET  # the rest is a backlog
        session.feed(client_frame(TEXT, b"late"))  # on its way as reading paused: after the backlog
        await turns(50)
        assert carrier.reading
        assert log == [text.decode() for text in texts] + ["late"]
        session.lost(None)
        await turns()

    asyncio.run(scenario())


def test_one_reason_ending_does_not_undo_another():
    async def scenario():
        gate = asyncio.get_running_loop().create_future()
        log = []
        session, carrier = start_session(gated_echo(gate, log), ws_max_queue=2)
        await turns()
        session.feed(client_frame(TEXT, b"x" * 100))  # before the accept: kept
        assert carrier.reading
        session.pause_writing()  # the client does not read what we write
        assert not carrier.reading
        gate.set_result(None)  # accepted, but writes are still blocked
        await turns()
        assert not carrier.reading
        session.resume_writing()
        await turns()
        assert carrier.reading and log == ["x" * 100]
        session.feed(client_frame(TEXT, b"a") + client_frame(TEXT, b"b") + client_frame(TEXT, b"c"))
        session.pause_writing()  # the app's send() waits: it falls behind, the queue fills
        await turns()
        assert not carrier.reading
        session.resume_writing()  # writes flow again, and the app catches up
        await turns()
        assert carrier.reading and log == ["x" * 100, "a", "b", "c"]
        session.lost(None)
        await turns()

    asyncio.run(scenario())


def test_bytes_before_the_accept_pause_reading_at_the_queue_size():
    async def scenario():
        gate = asyncio.get_running_loop().create_future()
        log = []
        session, carrier = start_session(gated_echo(gate, log), ws_max_queue_size=100)
        await turns()
        session.feed(client_frame(TEXT, b"y" * 60))
        assert carrier.reading
        session.feed(client_frame(TEXT, b"z" * 60))
        assert not carrier.reading  # 120 bytes held for an app that has not accepted
        gate.set_result(None)
        await turns()
        assert carrier.reading and log == ["y" * 60, "z" * 60]
        session.lost(None)
        await turns()

    asyncio.run(scenario())
