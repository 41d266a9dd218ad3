"""WebSockets over HTTP/2 (RFC 8441) in process: a real H2Connection on a real loop (FakeTransport),
an `h2` library client doing extended CONNECTs, and websockets' own sans-I/O ClientProtocol
(started OPEN, as RFC 8441 lets a client start) framing, masking and compressing on the streams.

Both codecs, both event loops. What the client sees is read back through h2's and websockets'
own parsers, so every frame the server writes is checked by second implementations.
"""

from __future__ import annotations

import asyncio
import logging

import h2.settings
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Close, CloseCode, Opcode
from websockets.headers import parse_extension
from websockets.protocol import State
from websockets.uri import parse_uri

from fastserve.http2.codec import CANCEL, NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM

from .h2_client import RawClient, parse_frames, rst_codes
from .harness import LOOPS, run_on, settle
from .test_h2_connection import CODECS, H2Peer


def connect_headers(path: bytes = b"/chat?room=1", protocol: bytes = b"websocket", extra=(), drop=()) -> list:
    fields = [(b":method", b"CONNECT"), (b":protocol", protocol), (b":scheme", b"http"), (b":path", path),
              (b":authority", b"example.com"), (b"sec-websocket-version", b"13"), *extra]
    return [(n, v) for n, v in fields if n not in drop]


class WebSocketOnStream:
    """websockets' client protocol on one stream of an H2Peer."""

    def __init__(self, peer: H2Peer, stream_id: int, extensions=()) -> None:
        self.peer, self.stream_id = peer, stream_id
        self.protocol = ClientProtocol(parse_uri("ws://example.com/chat"), state=State.OPEN, max_size=None)
        self.protocol.extensions = list(extensions)
        self.read = 0  # bytes of the stream's body already given to the protocol

    def open(self, headers=None) -> None:
        self.peer.client.send_headers(self.stream_id, headers or connect_headers(), end_stream=False)

    def send(self, method: str, *args) -> None:
        getattr(self.protocol, method)(*args)
        self.flush()

    def flush(self) -> None:
        """What the client protocol has to send (also its own answers: pongs, the close reply)."""
        for data in self.protocol.data_to_send():
            if data:
                self.peer.client.send_data(self.stream_id, data)
            else:  # websockets' SEND_EOF: the client ends its side of the stream
                self.peer.client.end_stream(self.stream_id)

    @property
    def stream(self):
        return self.peer.streams[self.stream_id]

    def frames(self) -> list[tuple]:
        body = self.stream.body
        self.protocol.receive_data(body[self.read:])
        self.read = len(body)
        events = self.protocol.events_received()
        self.flush()
        return [(f.opcode, f.fin, f.data) for f in events]


def in_loop(scenario, codecs=CODECS):
    @pytest.mark.parametrize("loop", LOOPS)
    @pytest.mark.parametrize("codec", codecs)
    def test(codec, loop):
        run_on(loop, lambda: scenario(codec))

    test.__name__ = scenario.__name__
    test.__doc__ = scenario.__doc__
    return test


# -- apps -------------------------------------------------------------------------------------
scopes: list = []
received: list = []


async def echo(scope, receive, send):
    """Accepts (with the first subprotocol offered), echoes text and bytes, records the rest."""
    scopes.append(scope)
    message = await receive()
    assert message["type"] == "websocket.connect"
    subprotocols = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None})
    while True:
        message = await receive()
        received.append(message)
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "close please":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
            continue
        reply = {"type": "websocket.send"}
        if message.get("text") is not None:
            reply["text"] = message["text"]
        else:
            reply["bytes"] = message["bytes"]
        await send(reply)


async def deny(scope, receive, send):
    await receive()
    await send({"type": "websocket.http.response.start", "status": 403, "headers": [(b"X-Why", b"no")]})
    await send({"type": "websocket.http.response.body", "body": b"not ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"you"})


def sender(size: int):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": b"x" * size})
        await send({"type": "websocket.send", "text": "done"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    return app


async def sluggish(scope, receive, send):
    """/slow never reads after the accept; anything else echoes."""
    if scope["path"] != "/slow":
        return await echo(scope, receive, send)
    await receive()
    # Not in the app's first step: on Python 3.12+ that runs as the stream opens (eager Task
    # start), before the server has read the rest of the client's frames.
    await asyncio.sleep(0)
    await send({"type": "websocket.accept"})
    await asyncio.sleep(3600)


async def opened(codec: str, app=echo, **options) -> tuple[H2Peer, WebSocketOnStream]:
    peer = H2Peer(app, codec, **options)
    ws = WebSocketOnStream(peer, 1)
    ws.open()
    await peer.exchange()
    assert ws.stream.status == 200, ws.stream.__dict__
    return peer, ws


# -- tests ------------------------------------------------------------------------------------
@in_loop
async def test_settings_advertise_extended_connect_and_accept_is_a_200(codec):
    """SETTINGS_ENABLE_CONNECT_PROTOCOL = 1; the accept is :status 200 without any RFC 6455 header;
    the scope says HTTP/2."""
    scopes.clear()
    peer = H2Peer(echo, codec)
    ws = WebSocketOnStream(peer, 1)
    ws.open(connect_headers(extra=[(b"sec-websocket-protocol", b"chat, superchat")]))
    await peer.exchange()
    assert peer.client.remote_settings.enable_connect_protocol == 1
    stream = ws.stream
    assert stream.status == 200 and not stream.ended and stream.reset is None
    names = {name for name, _ in stream.headers}
    assert not names & {b"sec-websocket-accept", b"upgrade", b"connection"}
    assert stream.header(b"sec-websocket-protocol") == b"chat"
    scope = scopes[-1]
    assert (scope["type"], scope["http_version"], scope["scheme"]) == ("websocket", "2", "ws")
    assert (scope["path"], scope["query_string"]) == ("/chat", b"room=1")
    assert scope["headers"][0] == (b"host", b"example.com")
    assert scope["subprotocols"] == ["chat", "superchat"]


@in_loop
async def test_text_binary_and_fragmented_messages(codec):
    peer, ws = await opened(codec)
    ws.send("send_text", "héllo".encode())
    ws.send("send_binary", b"\x00\x01\x02")
    ws.send("send_text", b"frag", False)
    ws.send("send_continuation", b"ment", False)
    ws.send("send_continuation", b"ed", True)
    await peer.exchange()
    assert ws.frames() == [
        (Opcode.TEXT, True, "héllo".encode()),
        (Opcode.BINARY, True, b"\x00\x01\x02"),
        (Opcode.TEXT, True, b"fragmented"),
    ]


@in_loop
async def test_ping_is_answered_with_a_pong(codec):
    peer, ws = await opened(codec)
    ws.send("send_ping", b"abc")
    await peer.exchange()
    assert ws.frames() == [(Opcode.PONG, True, b"abc")]


@in_loop
async def test_client_closes_first_then_both_sides_end_the_stream(codec):
    received.clear()
    peer, ws = await opened(codec)
    ws.send("send_close", CloseCode.GOING_AWAY, "later")
    await peer.exchange()
    [(opcode, _, payload)] = ws.frames()
    assert opcode == Opcode.CLOSE and Close.parse(payload).code == CloseCode.GOING_AWAY
    assert ws.stream.ended  # the server's END_STREAM after its close frame
    peer.client.end_stream(1)  # (websockets' client waits for the server to end first)
    await peer.exchange()
    assert received[-1] == {"type": "websocket.disconnect", "code": 1001, "reason": "later"}
    assert not peer.conn.websockets and peer.state.active_requests == 0
    assert not any(getattr(c, "phase", None) is not None for c in peer.state.connections)  # session gone


@in_loop
async def test_app_closes_first_and_the_stream_ends_after_the_reply(codec):
    received.clear()
    peer, ws = await opened(codec)
    ws.send("send_text", b"close please")
    await peer.exchange()
    [(opcode, _, payload)] = ws.frames()
    assert opcode == Opcode.CLOSE and Close.parse(payload) == Close(4001, "bye")
    peer.client.end_stream(1)  # after the close reply frames() sent
    await peer.exchange()
    assert ws.stream.ended and ws.stream.reset is None
    assert not peer.conn.websockets
    assert received[-1]["type"] == "websocket.disconnect"


@in_loop
async def test_message_over_max_size_fails_with_1009(codec):
    peer, ws = await opened(codec, ws_max_size=1000)
    ws.send("send_binary", b"x" * 2000)
    await peer.exchange()
    [(opcode, _, payload)] = ws.frames()
    assert opcode == Opcode.CLOSE and Close.parse(payload).code == CloseCode.MESSAGE_TOO_BIG
    assert ws.stream.ended


@in_loop
async def test_permessage_deflate(codec):
    peer = H2Peer(echo, codec)
    ws = WebSocketOnStream(peer, 1)
    ws.open(connect_headers(extra=[(b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")]))
    await peer.exchange()
    value = ws.stream.header(b"sec-websocket-extensions")
    assert value is not None and value.startswith(b"permessage-deflate")
    [(_, params)] = parse_extension(value.decode())
    offer = ClientPerMessageDeflateFactory(client_max_window_bits=True)
    ws.protocol.extensions = [offer.process_response_params(params, [])]
    text = "compress me " * 200
    ws.send("send_text", text.encode())
    await peer.exchange()
    assert ws.frames() == [(Opcode.TEXT, True, text.encode())]
    assert len(ws.stream.body) < len(text) // 4  # it went compressed


@in_loop
async def test_denial_response_is_an_http2_response_on_the_stream(codec):
    peer = H2Peer(deny, codec)
    ws = WebSocketOnStream(peer, 1)
    ws.open()
    await peer.exchange()
    stream = ws.stream
    assert (stream.status, stream.body, stream.ended) == (403, b"not you", True)
    assert stream.header(b"x-why") == b"no" and stream.header(b"content-length") == b"7"
    assert stream.reset in (None, NO_ERROR)  # the client's side is closed with NO_ERROR (RFC 9113 8.1)
    assert not peer.conn.websockets and peer.state.active_requests == 0


@in_loop
async def test_bad_handshakes_are_stream_errors_or_400(codec):
    """Missing :scheme or :path: RST_STREAM(PROTOCOL_ERROR); a :protocol other than websocket or
    a wrong version: 400 from the session; a plain CONNECT: reset. The connection serves on."""
    peer = H2Peer(echo, codec)
    peer.client.send_headers(1, connect_headers(drop={b":scheme"}), end_stream=False)
    peer.client.send_headers(3, connect_headers(drop={b":path"}), end_stream=False)
    peer.client.send_headers(5, connect_headers(protocol=b"foo"), end_stream=False)
    peer.client.send_headers(7, [(b":method", b"CONNECT"), (b":authority", b"example.com:443")], end_stream=False)
    peer.client.send_headers(9, [*connect_headers(drop={b"sec-websocket-version"}),
                                 (b"sec-websocket-version", b"8")], end_stream=False)
    await peer.exchange()
    assert peer.streams[1].reset == PROTOCOL_ERROR and peer.streams[3].reset == PROTOCOL_ERROR
    assert peer.streams[5].status == 400 and peer.streams[5].ended
    assert peer.streams[7].reset == PROTOCOL_ERROR
    assert peer.streams[9].status == 400 and peer.streams[9].header(b"sec-websocket-version") == b"13"
    ws = WebSocketOnStream(peer, 11)
    ws.open()
    await peer.exchange()
    ws.send("send_text", b"still here")
    await peer.exchange()
    assert ws.frames() == [(Opcode.TEXT, True, b"still here")]
    assert peer.goaway is None


@in_loop
async def test_websockets_off(codec):
    """--ws none: the h2 codec does not advertise extended CONNECT (and refuses one); zttp cannot
    stop advertising it, and the server answers 501."""
    peer = H2Peer(echo, codec, ws="none")
    WebSocketOnStream(peer, 1).open()
    await peer.exchange()
    if codec == "h2":
        assert peer.client.remote_settings.enable_connect_protocol == 0
        assert peer.streams[1].reset == PROTOCOL_ERROR
    else:
        assert peer.streams[1].status == 501


@in_loop
async def test_large_message_waits_for_the_clients_window(codec):
    """A 300 kB message to a client with a 16 kB window: what waits for credit is held (the app's
    writes pause), and every byte is delivered in order as the client grants credit."""
    window = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16_384}
    peer = H2Peer(sender(300_000), codec, client_settings=window, auto_ack=False)
    ws = WebSocketOnStream(peer, 1)
    ws.open()
    await peer.exchange()
    assert 0 < len(ws.stream.body) <= 16_384
    assert peer.conn.websockets[1].writes_paused  # the app waits in send()
    frames: list = []
    for _ in range(200):
        granted = len(ws.stream.body) - ws.read
        if granted:
            peer.client.acknowledge_received_data(granted, 1)  # stream and connection credit
        frames += ws.frames()
        if len(frames) == 2:
            break
        await peer.exchange(1)
    assert [(op, len(data)) for op, _, data in frames] == [(Opcode.BINARY, 300_000), (Opcode.TEXT, 4)]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("codec", CODECS)
def test_a_websocket_whose_window_stays_closed_is_reset_after_the_write_timeout(codec, loop, caplog):
    """--timeout-write through the session's carrier: a WebSocket stream whose client grants no
    window for its messages is reset (CANCEL); the connection and its other streams go on."""
    caplog.set_level(logging.INFO, logger="fastserve.error")

    async def scenario():
        window = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16_384}
        peer = H2Peer(sender(300_000), codec, client_settings=window, auto_ack=False, timeout_write=0.2)
        WebSocketOnStream(peer, 1).open()
        await peer.exchange()
        assert peer.conn.websockets[1].writes_paused
        for _ in range(250):
            await peer.exchange(1)
            if peer.streams[1].reset is not None:
                break
            await asyncio.sleep(0.02)
        assert peer.streams[1].reset == CANCEL
        assert not peer.transport.closing and peer.goaway is None

    run_on(loop, scenario)
    lines = [r.getMessage() for r in caplog.records if "(--timeout-write)" in r.getMessage()]
    assert len(lines) == 1 and "WebSocket" in lines[0]


@in_loop
async def test_a_message_larger_than_the_window_starts_going_out_at_once(codec):
    """The part of an echo the client's window takes is written at once, not when the client
    next sends something (it may be waiting for exactly that part)."""
    window = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 8_192}
    peer = H2Peer(echo, codec, client_settings=window)
    ws = WebSocketOnStream(peer, 1)
    ws.open()
    await peer.exchange()
    ws.send("send_binary", b"z" * 12_000)
    peer.send()  # one flight, then only reading: no client frame that would make the server flush
    await settle(peer.transport)
    peer.read()
    assert len(ws.stream.body) == 8_192


async def _slow_stream_does_not_stall_another(codec):
    """A WebSocket whose app never reads has its stream window closed; another WebSocket on the
    same connection still echoes (per-stream credit; with zttp the adapter holds back the credit
    zttp writes)."""
    peer = H2Peer(sluggish, codec, ws_max_queue=4)
    slow = WebSocketOnStream(peer, 1)
    slow.open(connect_headers(path=b"/slow"))
    fast = WebSocketOnStream(peer, 3)
    fast.open()
    await peer.exchange()
    for _ in range(200):
        if peer.client.local_flow_control_window(1) < 2000:
            break
        slow.send("send_binary", b"y" * 1000)
        await peer.exchange(1)
    assert peer.client.local_flow_control_window(1) < 2000  # the slow stream got no more credit
    fast.send("send_text", b"not stalled")
    await peer.exchange()
    assert fast.frames() == [(Opcode.TEXT, True, b"not stalled")]


test_slow_stream_does_not_stall_another = in_loop(_slow_stream_does_not_stall_another, CODECS)


@in_loop
async def test_shutdown_closes_with_1012_then_the_connection(codec):
    received.clear()
    peer, ws = await opened(codec)
    for conn in list(peer.state.connections):
        conn.shutdown()
    await settle(peer.transport)
    # (h2's client takes no frame after a GOAWAY: what follows is read and sent raw)
    written = parse_frames(peer.transport.take())
    assert [f.error_code for f in written if isinstance(f, GoAwayFrame)] == [NO_ERROR]
    ws.protocol.receive_data(b"".join(f.data for f in written if isinstance(f, DataFrame) and f.stream_id == 1))
    [frame] = ws.protocol.events_received()
    assert frame.opcode == Opcode.CLOSE and Close.parse(frame.data).code == CloseCode.SERVICE_RESTART
    assert received[-1] == {"type": "websocket.disconnect", "code": 1012, "reason": "server shutting down"}
    assert not peer.transport.is_closing()  # the WebSocket is still closing: GOAWAY, not a close
    peer.transport.feed(RawClient.data(1, b"".join(ws.protocol.data_to_send()), end_stream=True))
    await peer.exchange()
    await asyncio.sleep(0.05)
    assert not peer.conn.websockets and peer.transport.is_closing()


@in_loop
async def test_client_reset_is_a_1006_disconnect(codec):
    received.clear()
    peer, ws = await opened(codec)
    peer.client.reset_stream(1, CANCEL)
    await peer.exchange()
    assert received[-1]["type"] == "websocket.disconnect" and received[-1]["code"] == 1006
    assert not peer.conn.websockets and peer.state.active_requests == 0


@in_loop
async def test_concurrency_limit_and_stream_limit_count_websockets(codec):
    peer, ws = await opened(codec, limit_concurrency=1)
    second = WebSocketOnStream(peer, 3)
    second.open()
    peer.get(5)
    await peer.exchange()
    assert peer.streams[3].status == 503 and peer.streams[5].status == 503
    if codec == "h2":  # zttp's stream limit is fixed at 128
        peer, ws = await opened(codec, http2_max_concurrent_streams=1)
        # (h2's client keeps to the limit: the second stream goes raw, the last frame sent)
        peer.transport.feed(RawClient().headers(3, [(b":method", b"GET"), (b":scheme", b"http"),
                                                    (b":path", b"/"), (b":authority", b"example.com")]))
        await settle(peer.transport)
        assert rst_codes(peer.transport.take()) == {3: REFUSED_STREAM}  # (h2's client ignores it: raw)


@in_loop
async def test_idle_timeout_spares_a_connection_with_an_open_websocket(codec):
    peer, ws = await opened(codec, timeout_keep_alive=0.05)
    await asyncio.sleep(0.2)
    await peer.exchange()
    assert not peer.transport.is_closing() and peer.goaway is None
    ws.send("send_text", b"awake")
    await peer.exchange()
    assert ws.frames() == [(Opcode.TEXT, True, b"awake")]


async def never_answers(scope, receive, send):
    await receive()
    await asyncio.sleep(3600)


@in_loop
async def test_handshake_timeout_is_a_503_on_the_stream(codec):
    peer = H2Peer(never_answers, codec, timeout_ws_handshake=0.05)
    WebSocketOnStream(peer, 1).open()
    await peer.exchange()
    await asyncio.sleep(0.1)
    await peer.exchange()
    stream = peer.streams[1]
    assert (stream.status, stream.ended) == (503, True)
    assert not peer.conn.websockets and peer.state.active_requests == 0


@in_loop
async def test_client_ending_or_sending_around_a_refusal(codec):
    """END_STREAM before any answer: the stream is reset (CANCEL) and forgotten; DATA after a
    refusal is credited and dropped; the connection serves on."""
    peer = H2Peer(sluggish, codec)
    peer.client.send_headers(1, connect_headers(path=b"/slow"), end_stream=True)
    peer.client.send_headers(3, connect_headers(protocol=b"foo"), end_stream=False)
    await peer.exchange()
    assert peer.streams[1].reset == CANCEL
    assert peer.streams[3].status == 400 and peer.streams[3].ended
    assert peer.streams[3].reset in (None, NO_ERROR)
    for _ in range(8):  # raw: h2's client sends nothing on a stream reset (DATA frames need no HPACK)
        peer.transport.feed(RawClient.data(3, b"z" * 8_000))
    await peer.exchange()
    assert not peer.conn.websockets and peer.goaway is None and peer.state.active_requests == 0
    ws = WebSocketOnStream(peer, 5)
    ws.open()
    await peer.exchange()
    ws.send("send_text", b"next")
    await peer.exchange()
    assert ws.frames() == [(Opcode.TEXT, True, b"next")]


@in_loop
async def test_a_slow_websocket_gets_its_credit_once_its_app_catches_up(codec):
    """A WebSocket whose app is behind has its stream's credit withheld, the connection keeps
    reading; once the app takes its messages the client may send again."""
    gate = asyncio.Event()

    async def late_reader(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    peer = H2Peer(late_reader, codec, ws_max_queue=2)
    ws = WebSocketOnStream(peer, 1)
    ws.open()
    await peer.exchange()
    for _ in range(100):
        if peer.client.local_flow_control_window(1) < 2000:
            break
        ws.send("send_binary", b"y" * 1000)
        await peer.exchange(1)
    assert peer.client.local_flow_control_window(1) < 2000  # withheld: the app has not taken its queue
    assert peer.transport.reading  # only this stream waits
    gate.set()
    await peer.exchange(20)  # (the backlog is parsed a turn at a time as the app takes messages)
    assert peer.client.local_flow_control_window(1) > 32_000  # (zttp credits by half windows)

@in_loop
async def test_a_client_that_pings_but_never_grants_window_stays_bounded(codec):
    """Pings from a client whose window is closed: the pongs wait (bounded), the session stops
    reading (the stream's credit withheld), nothing grows unbounded."""
    window = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    peer = H2Peer(echo, codec, client_settings=window, auto_ack=False)
    ws = WebSocketOnStream(peer, 1)
    ws.open()
    await peer.exchange()
    payload = b"p" * 125
    for _ in range(2000):  # 2000 pongs of 127 bytes would be 254 kB
        if peer.client.local_flow_control_window(1) < 200 or not peer.transport.reading:
            break
        ws.send("send_ping", payload)
        await peer.exchange(1)
    websocket = peer.conn.websockets[1]
    assert websocket.writes_paused and websocket.pending_size < 64 * 1024 + 2 * len(payload)
    assert peer.client.local_flow_control_window(1) < 200 or not peer.transport.reading


@in_loop
async def test_many_websockets_then_the_connection_drops(codec):
    """100 WebSockets on one connection; the transport is lost: every session hears it once, the
    registry and the counters are back to zero."""
    received.clear()
    peer = H2Peer(echo, codec)
    sockets = [WebSocketOnStream(peer, 1 + 2 * i) for i in range(100)]
    for ws in sockets:
        ws.open()
    await peer.exchange()
    assert len(peer.conn.websockets) == 100 and peer.state.active_requests == 100
    peer.transport.abort()
    await peer.exchange()
    assert not peer.conn.websockets and peer.state.active_requests == 0
    assert not peer.state.connections
    assert [m["code"] for m in received] == [1006] * 100


def test_logging_is_one_line_for_a_bad_extended_connect(caplog):
    caplog.set_level(logging.INFO, logger="fastserve.error")

    async def scenario():
        peer = H2Peer(echo, CODECS[0])
        peer.client.send_headers(1, connect_headers(protocol=b"foo"), end_stream=False)
        await peer.exchange()
        assert peer.streams[1].status == 400

    run_on("asyncio", scenario)
    lines = [r for r in caplog.records if r.name == "fastserve.error"]
    assert len(lines) == 1 and lines[0].exc_info is None



# -- the connection's write pause (the transport's buffer is full) --------------------------------
MESSAGE = 64 * 1024
HUGE_WINDOWS = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1}


def pusher(sent: list, limit: int = 200):
    """Accepts, then sends 64 KiB messages as fast as send() returns (counted in ``sent``),
    letting the loop run between them as a producer that awaits its data does."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        while len(sent) < limit:
            await send({"type": "websocket.send", "bytes": b"p" * MESSAGE})
            sent.append(1)
            await asyncio.sleep(0)
        while (await receive())["type"] != "websocket.disconnect":
            pass

    return app


async def huge_window_peer(app, codec: str) -> H2Peer:
    """A client that grants the largest windows there are, stream and connection."""
    peer = H2Peer(app, codec, client_settings=HUGE_WINDOWS)
    peer.client.increment_flow_control_window(2**31 - 1 - 65_535)
    return peer


def written_since(peer: H2Peer) -> int:
    return len(peer.transport.take())


@in_loop
async def test_the_connections_write_pause_holds_a_websockets_sends(codec):
    """Windows do not bound what a client that reads nothing makes us buffer: with the transport
    paused for writing, the app's send() waits (what is written stays bounded whatever the
    windows), and it goes on once the transport resumes."""
    sent: list = []
    peer = await huge_window_peer(pusher(sent), codec)
    WebSocketOnStream(peer, 1).open()
    peer.send()
    for _ in range(5):
        await asyncio.sleep(0)
    assert 0 < len(sent) < 10
    peer.conn.pause_writing()  # the socket's buffer is full: the client reads nothing
    written_since(peer)
    at_pause = len(sent)
    await settle(peer.transport)
    for _ in range(20):
        await asyncio.sleep(0)
    assert written_since(peer) <= 2 * MESSAGE  # (not the 200 messages the windows allow)
    assert len(sent) <= at_pause + 1
    peer.conn.resume_writing()
    await settle(peer.transport)
    assert len(sent) == 200


@in_loop
async def test_a_websocket_opened_while_the_connection_is_paused_resumes_with_it(codec):
    """A WebSocket accepted while the transport is paused for writing waits in send() and is
    resumed by the connection's resume_writing (no stream window is involved)."""
    sent: list = []
    peer = await huge_window_peer(pusher(sent, limit=50), codec)
    peer.send()
    await settle(peer.transport)
    peer.conn.pause_writing()
    WebSocketOnStream(peer, 1).open()
    peer.send()
    await settle(peer.transport)
    assert len(sent) <= 1
    assert written_since(peer) <= 2 * MESSAGE
    peer.conn.resume_writing()
    await settle(peer.transport)
    assert len(sent) == 50
