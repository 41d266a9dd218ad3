"""The WebSocket session in process: a real upgrade through HTTPProtocol (either parser) on a
real loop, the session on a fake transport, frames built by hand.

Accept, deny and close orders, fragmentation and control frames, faults and their close codes,
and back-pressure both ways. (tests/test_fuzz_websocket.py fuzzes frames against a real server;
tests/test_inprocess_ws_differential.py compares the direct-framing path with websockets' parser.)
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from fastserve.asgi.errors import ClientDisconnected

from .harness import (
    BINARY,
    CLOSE,
    CONT,
    IMPL_IDS,
    IMPLS,
    PING,
    PONG,
    TEXT,
    client_frame,
    close_payload,
    connection_runner,
    server_frames,
    split_handshake,
    upgrade_request,
)

ACCEPT_KEY = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3, for the harness's key


@pytest.fixture(params=IMPLS, ids=IMPL_IDS)
def run(request):
    return connection_runner(*request.param)


def echo_app(log: list):
    """Accepts, echoes every message, records every message it receives."""

    async def app(scope, receive, send):
        while True:
            message = await receive()
            log.append(message)
            kind = message["type"]
            if kind == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif kind == "websocket.receive":
                if message.get("text") is not None:
                    await send({"type": "websocket.send", "text": message["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                return

    return app


async def open_ws(conn, early: bytes = b"") -> None:
    conn.feed(upgrade_request() + early)
    await conn.settle()
    head, rest = split_handshake(conn.transport.take())
    assert head.startswith(b"HTTP/1.1 101 "), head
    accept = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
              if line.lower().startswith(b"sec-websocket-accept:")]
    assert accept == [ACCEPT_KEY], head
    if rest:
        conn.transport.writes.insert(0, rest)  # frames written with the 101 stay readable


async def exchange(conn, data: bytes) -> list[tuple[int, bool, bytes]]:
    conn.feed(data)
    await conn.settle()
    return server_frames(conn.transport.take())


def close_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0] if payload else 1005


# -- accept and echo ----------------------------------------------------------------------------
def test_accept_then_echo_text_and_binary(run):
    log = []

    async def scenario(conn):
        await open_ws(conn)
        frames = await exchange(conn, client_frame(TEXT, "héllo".encode()) + client_frame(BINARY, b"\x00\xff"))
        assert frames == [(TEXT, True, "héllo".encode()), (BINARY, True, b"\x00\xff")]
        assert log == [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "héllo"},
                       {"type": "websocket.receive", "bytes": b"\x00\xff"}]
        assert not conn.closed

    run(echo_app(log), scenario)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_message_sizes_around_the_length_encodings(run, size):
    log = []
    payload = bytes(i % 251 for i in range(size))

    async def scenario(conn):
        await open_ws(conn)
        frames = await exchange(conn, client_frame(BINARY, payload))
        assert frames == [(BINARY, True, payload)]

    run(echo_app(log), scenario)


def test_frames_sent_with_the_upgrade_request_arrive_after_accept(run):
    log = []

    async def scenario(conn):
        await open_ws(conn, early=client_frame(TEXT, b"early"))
        assert server_frames(conn.transport.take()) == [(TEXT, True, b"early")]

    run(echo_app(log), scenario)


def test_upgrade_pipelined_after_a_request_waits_for_its_response(run):
    async def app(scope, receive, send):
        if scope["type"] == "http":
            await asyncio.sleep(0.01)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first"})
            return
        await echo_app([])(scope, receive, send)

    async def scenario(conn):
        conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + upgrade_request())
        await asyncio.sleep(0.05)
        await conn.settle()
        data = conn.transport.take()
        assert data.startswith(b"HTTP/1.1 200 ") and data.index(b"first") < data.index(b"HTTP/1.1 101 ")

    run(app, scenario)


# -- denial -------------------------------------------------------------------------------------
def test_close_before_accept_is_403(run):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.close", "code": 1008})

    async def scenario(conn):
        conn.feed(upgrade_request())
        await conn.settle()
        assert conn.transport.data.startswith(b"HTTP/1.1 403 ") and conn.closed

    run(app, scenario)


def test_denial_response_is_sent_as_the_app_made_it(run):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"token")]})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})

    async def scenario(conn):
        conn.feed(upgrade_request())
        await conn.settle()
        head, body = split_handshake(conn.transport.data)
        assert head.startswith(b"HTTP/1.1 401 ") and b"x-why: token" in head and body == b"no entry"
        assert conn.closed

    run(app, scenario)


@pytest.mark.parametrize("kind", ["raise", "return"])
def test_app_failing_before_accept_is_500(run, kind):
    async def app(scope, receive, send):
        await receive()
        if kind == "raise":
            raise RuntimeError("boom")

    async def scenario(conn):
        conn.feed(upgrade_request())
        await conn.settle()
        assert conn.transport.data.startswith(b"HTTP/1.1 500 ") and conn.closed
        assert b"boom" not in conn.transport.data

    run(app, scenario)


def test_bad_handshake_is_refused_before_the_app(run):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope)

    async def scenario(conn):
        conn.feed(upgrade_request().replace(b"Version: 13", b"Version: 8"))
        await conn.settle()
        head = conn.transport.data
        assert head.startswith(b"HTTP/1.1 426 ") and b"sec-websocket-version: 13" in head
        assert calls == [] and conn.closed

    run(app, scenario)


# -- close orders -------------------------------------------------------------------------------
def test_client_closes_first(run):
    log = []

    async def scenario(conn):
        await open_ws(conn)
        frames = await exchange(conn, client_frame(CLOSE, close_payload(1001, b"bye")))
        assert frames == [(CLOSE, True, close_payload(1001, b"bye"))]  # echoed
        assert conn.closed  # the server closes TCP after the closing handshake
        assert log[-1] == {"type": "websocket.disconnect", "code": 1001, "reason": "bye"}

    run(echo_app(log), scenario)


def test_app_closes_first_and_waits_for_the_reply(run):
    seen = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})
        seen.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except ClientDisconnected:
            seen.append("ClientDisconnected")

    async def scenario(conn):
        await open_ws(conn)
        await conn.settle()
        assert server_frames(conn.transport.take()) == [(CLOSE, True, close_payload(4000, b"done"))]
        assert not conn.closed  # waiting for the client's close frame
        await exchange(conn, client_frame(CLOSE, close_payload(4000, b"done")))
        assert conn.closed
        assert seen == [{"type": "websocket.disconnect", "code": 4000, "reason": "done"}, "ClientDisconnected"]
        assert b"too late" not in conn.transport.data

    run(app, scenario)


@pytest.mark.parametrize("kind,code", [("return", 1000), ("raise", 1011)])
def test_app_ending_after_accept_closes_the_connection(run, kind, code):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        if kind == "raise":
            raise RuntimeError("boom")

    async def scenario(conn):
        await open_ws(conn)
        await conn.settle()
        [(opcode, _, payload)] = server_frames(conn.transport.take())
        assert opcode == CLOSE and close_code(payload) == code

    run(app, scenario)


def test_disconnect_without_close_frame_is_1006(run):
    log = []

    async def scenario(conn):
        await open_ws(conn)
        conn.transport.disconnect()
        await conn.settle()
        assert log[-1]["type"] == "websocket.disconnect" and log[-1]["code"] == 1006

    run(echo_app(log), scenario)


def test_server_shutdown_closes_with_1012(run):
    log = []

    async def scenario(conn):
        await open_ws(conn)
        conn.session.shutdown()
        await conn.settle()
        [(opcode, _, payload)] = server_frames(conn.transport.take())
        assert opcode == CLOSE and close_code(payload) == 1012
        assert log[-1]["type"] == "websocket.disconnect" and log[-1]["code"] == 1012

    run(echo_app(log), scenario)


# -- fragmentation and control frames ------------------------------------------------------------
def test_fragmented_message_with_a_ping_in_between(run):
    log = []

    async def scenario(conn):
        await open_ws(conn)
        data = (client_frame(TEXT, b"frag", fin=False) + client_frame(PING, b"p1")
                + client_frame(CONT, b"men", fin=False) + client_frame(CONT, "té".encode()))
        # fed a byte at a time: the session must find frame boundaries itself
        for i in range(len(data)):
            conn.feed(data[i : i + 1])
        await conn.settle()
        frames = server_frames(conn.transport.take())
        assert frames == [(PONG, True, b"p1"), (TEXT, True, "fragmenté".encode())]
        assert log[1:] == [{"type": "websocket.receive", "text": "fragmenté"}]

    run(echo_app(log), scenario)


@pytest.mark.parametrize("data,code", [
    (client_frame(TEXT, b"\xff"), 1007),
    (client_frame(TEXT, b"ok", fin=False) + client_frame(CONT, b"\xc3"), 1007),
    (client_frame(CONT, b"stray"), 1002),
    (client_frame(TEXT, b"unmasked", masked=False), 1002),
    (client_frame(PING, b"p" * 126), 1002),
    (client_frame(BINARY, b"x", rsv=0x40), 1002),
    (client_frame(0x3, b"x"), 1002),
    (client_frame(BINARY, b"x" * 1025), 1009),
    (client_frame(CLOSE, close_payload(999)), 1002),
    (client_frame(CLOSE, close_payload(1000, b"\xff")), 1007),
], ids=["utf8", "utf8-fragment", "stray-cont", "unmasked", "long-ping", "rsv", "opcode", "too-big",
        "close-code", "close-reason"])
def test_faults_close_with_the_right_code(run, data, code):
    log = []

    async def scenario(conn):
        await open_ws(conn)
        frames = await exchange(conn, data + client_frame(TEXT, b"after"))
        closes = [payload for opcode, _, payload in frames if opcode == CLOSE]
        assert len(closes) == 1 and close_code(closes[0]) == code, frames
        assert (TEXT, True, b"after") not in frames
        assert conn.closed
        assert log[-1]["type"] == "websocket.disconnect" and log[-1]["code"] == code

    run(echo_app(log), scenario, ws_max_size=1024)


# -- back-pressure ------------------------------------------------------------------------------
def test_reading_pauses_while_the_app_falls_behind(run):
    gate, log = [], []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await gate[0]
        while True:
            message = await receive()
            log.append(message)
            if message["type"] != "websocket.receive":
                return

    async def scenario(conn):
        gate.append(asyncio.get_running_loop().create_future())
        await open_ws(conn)
        sent = 0
        while conn.transport.reading and sent < 10:  # a real transport delivers nothing while paused
            conn.feed(client_frame(TEXT, b"m%d" % sent))
            sent += 1
        await conn.settle()
        assert not conn.transport.reading and sent == 2  # --ws-max-queue 2
        gate[0].set_result(None)
        await conn.settle()
        assert conn.transport.reading
        assert [m["text"] for m in log] == ["m0", "m1"]

    run(app, scenario, ws_max_queue=2)


def test_send_waits_while_the_write_buffer_is_full(run):
    progress = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        await send({"type": "websocket.send", "text": "reply"})
        progress.append("sent")

    async def scenario(conn):
        await open_ws(conn)
        conn.transport.fill_write_buffer()
        conn.feed(client_frame(TEXT, b"go"))
        await conn.settle()
        assert progress == [] and conn.transport.data == b""
        conn.transport.drain_write_buffer()
        await conn.settle()
        assert progress == ["sent"]
        assert server_frames(conn.transport.take())[0] == (TEXT, True, b"reply")

    run(app, scenario)
