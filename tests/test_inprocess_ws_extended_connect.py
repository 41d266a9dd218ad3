"""WebSockets over HTTP/2 (RFC 8441) without HTTP/2: the session started from an extended CONNECT
through ``websocket.stream_handler``, over a fake stream carrier that records every call.

This is what an HTTP/2 stream carrier will see (the contract: src/fastserve/websocket/carrier.py).
The client is websockets' own sans-I/O ClientProtocol, started OPEN as RFC 8441 lets a client
start: it masks, fragments and compresses as a real client does, and parses what the server writes.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import copy_context
from types import SimpleNamespace

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.headers import parse_extension
from websockets.protocol import State
from websockets.uri import parse_uri

from fastserve.asgi.flow import FlowControl
from fastserve.config import Config
from fastserve.server import ServerState
from fastserve.websocket import stream_handler
from fastserve.websocket.handshake import HandshakeRecord

from .harness import WS_KEY, upgrade_head
from .test_inprocess_ws_carrier import RecordingCarrier, turns

H2_HEADERS = [(b"sec-websocket-version", b"13"), (b"origin", b"https://example.com")]


def extended_connect(app, headers=H2_HEADERS, protocol="websocket", **options):
    """A session on a recording carrier, as an HTTP/2 connection would start it for one stream."""
    config = Config(app="tests.harness:unused", **options)
    state = ServerState(config, {}, None, None)
    carrier = RecordingCarrier()
    conn = SimpleNamespace(loop=asyncio.get_running_loop(), app=app, state=state, config=config, context=copy_context(),
                           server=("127.0.0.1", 8443), tls=None, flow=FlowControl(None))
    request = upgrade_head("/chat", b"/chat", b"room=1", list(headers), "2", ("127.0.0.1", 5000), "https")
    session = stream_handler(config, app)(conn, request, protocol, carrier)
    return session, carrier


class Client:
    """websockets' client protocol, OPEN from the start, wired to the session and its carrier."""

    def __init__(self, session, carrier, extensions=()) -> None:
        self.session, self.carrier = session, carrier
        self.protocol = ClientProtocol(parse_uri("wss://x/chat"), state=State.OPEN, max_size=None)
        self.protocol.extensions = list(extensions)
        self.read = 0  # carrier writes already given to the protocol

    def send(self, method: str, *args) -> None:
        getattr(self.protocol, method)(*args)
        self.flush()

    def flush(self) -> None:
        """What the client protocol has to send (also its own answers: pongs, the close reply)."""
        for data in self.protocol.data_to_send():
            if data:
                self.session.feed(data)

    def events(self) -> list[Frame]:
        writes = [call for call in self.carrier.calls if call[0] == "write"]
        for _, data in writes[self.read:]:
            self.protocol.receive_data(data)
        self.read = len(writes)
        return self.protocol.events_received()


def accept_app(log, subprotocol=None):
    """Accepts, echoes text and bytes, records what it receives."""

    async def app(scope, receive, send):
        log.append(scope)
        while True:
            message = await receive()
            log.append(message)
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept", "subprotocol": subprotocol})
            elif message["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
            else:
                return

    return app


def frames(events) -> list[tuple]:
    return [(frame.opcode, frame.fin, frame.data) for frame in events]


async def opened(app, extensions=(), headers=H2_HEADERS, **options):
    session, carrier = extended_connect(app, headers, **options)
    await turns()
    assert carrier.kinds()[0] == "accept", carrier.calls
    return session, carrier, Client(session, carrier, extensions)


def test_no_handler_when_websockets_are_off():
    assert stream_handler(Config(app="tests.harness:unused", ws="none"), None) is None


# -- the handshake ----------------------------------------------------------------------------------
def test_accept_is_a_200_with_the_subprotocol_and_no_rfc6455_keys():
    log = []

    async def scenario():
        headers = [*H2_HEADERS, (b"sec-websocket-protocol", b"chat, superchat")]
        session, carrier = extended_connect(accept_app(log, "chat"), headers)
        await turns()
        [(kind, accepted)] = carrier.calls
        assert kind == "accept"
        assert accepted[b"sec-websocket-protocol"] == b"chat"
        for name in (b"sec-websocket-accept", b"upgrade", b"connection", b"sec-websocket-extensions"):
            assert name not in accepted
        assert b"date" in accepted and accepted[b"server"] == b"fastserve"  # the server's defaults
        scope = log[0]
        assert (scope["type"], scope["http_version"], scope["scheme"]) == ("websocket", "2", "wss")
        assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/chat", b"/chat", b"room=1")
        assert scope["subprotocols"] == ["chat", "superchat"]
        assert log[1] == {"type": "websocket.connect"}
        assert session.accept_status == 200  # what the access log records, with the method:
        assert HandshakeRecord(session.scope, 200, 0.0).scope["method"] == "CONNECT"
        session.lost(None)
        await turns()

    asyncio.run(scenario())


def test_a_key_sent_anyway_is_ignored():
    async def scenario():
        session, carrier = extended_connect(accept_app([]), [*H2_HEADERS, (b"sec-websocket-key", WS_KEY)])
        await turns()
        assert carrier.kinds() == ["accept"] and b"sec-websocket-accept" not in carrier.calls[0][1]
        session.lost(None)
        await turns()

    asyncio.run(scenario())


@pytest.mark.parametrize("headers, protocol, version_header", [
    ([(b"sec-websocket-version", b"8")], "websocket", True),
    ([], "websocket", False),  # no sec-websocket-version at all
    (H2_HEADERS, "webtransport", False),
    ([(b"sec-websocket-version", b"13"), (b"sec-websocket-extensions", b"permessage-deflate; =")], "websocket", False),
])
def test_bad_extended_connect_is_a_plain_400_before_the_app(caplog, headers, protocol, version_header):
    async def never_called(scope, receive, send):
        raise AssertionError("the app must not run for an invalid handshake")

    async def scenario():
        session, carrier = extended_connect(never_called, headers, protocol)
        await turns()
        [(kind, status, reason, extra)] = carrier.calls
        assert (kind, status) == ("refuse", 400) and reason.startswith("Invalid WebSocket handshake")
        assert ((b"sec-websocket-version", b"13") in extra) is version_header
        assert all(name != b"upgrade" for name, _ in extra)  # a connection-specific header: not on HTTP/2
        session.lost(None)
        await turns()

    caplog.set_level(logging.INFO, logger="fastserve.error")
    asyncio.run(scenario())
    [record] = caplog.records
    assert record.getMessage().startswith("Refused a WebSocket handshake from 127.0.0.1:5000")


def test_denial_response_is_a_plain_response_on_the_stream():
    async def deny(scope, receive, send):
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403, "headers": [(b"x-why", b"no")]})
        await send({"type": "websocket.http.response.body", "body": b"not ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"you"})

    async def scenario():
        session, carrier = extended_connect(deny, server_header=False, date_header=False)
        await turns()
        assert carrier.calls == [("deny", 403, [(b"x-why", b"no")], b"not you")]
        session.lost(None)
        await turns()

    asyncio.run(scenario())


def test_handshake_timeout_is_a_503_refusal():
    async def never_answers(scope, receive, send):
        await receive()
        await asyncio.sleep(3600)

    async def scenario():
        session, carrier = extended_connect(never_answers, timeout_ws_handshake=0.05)
        await asyncio.sleep(0.2)
        [(kind, status, _, extra)] = carrier.calls
        assert (kind, status) == ("refuse", 503) and (b"retry-after", b"1") in extra
        assert session.disconnect["reason"] == "handshake timeout"
        session.lost(None)
        session.task.cancel()
        await turns()

    asyncio.run(scenario())


# -- messages -----------------------------------------------------------------------------------------
def test_text_binary_and_fragmented_messages_both_ways():
    log = []

    async def scenario():
        session, carrier, client = await opened(accept_app(log))
        client.send("send_text", "你好!".encode())
        client.send("send_binary", b"\x00\xff")
        client.send("send_text", b"frag", False)
        client.send("send_continuation", b"men", False)
        client.send("send_continuation", b"ted", True)
        await turns()
        assert log[2:] == [
            {"type": "websocket.receive", "text": "你好!"},
            {"type": "websocket.receive", "bytes": b"\x00\xff"},
            {"type": "websocket.receive", "text": "fragmented"},
        ]
        assert frames(client.events()) == [
            (Opcode.TEXT, True, "你好!".encode()), (Opcode.BINARY, True, b"\x00\xff"), (Opcode.TEXT, True, b"fragmented"),
        ]
        session.lost(None)
        await turns()

    asyncio.run(scenario())


def test_ping_is_answered_with_a_pong():
    async def scenario():
        session, carrier, client = await opened(accept_app([]))
        client.send("send_ping", b"are you there")
        await turns()
        assert frames(client.events()) == [(Opcode.PONG, True, b"are you there")]
        session.lost(None)
        await turns()

    asyncio.run(scenario())


def test_client_closes_first_then_the_stream_ends():
    log = []

    async def scenario():
        session, carrier, client = await opened(accept_app(log))
        client.send("send_close", 1001, "bye")
        await turns()
        assert frames(client.events()) == [(Opcode.CLOSE, True, Close(1001, "bye").serialize())]
        assert carrier.kinds()[-1] == "end"  # END_STREAM once the closing handshake is done
        session.lost(None)  # the stream is over
        await turns()
        assert log[-1] == {"type": "websocket.disconnect", "code": 1001, "reason": "bye"}
        assert session not in session.state.connections

    asyncio.run(scenario())


def test_app_closes_first_and_the_stream_ends_after_the_reply():
    seen = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})
        seen.append(await receive())

    async def scenario():
        session, carrier, client = await opened(app)
        await turns()
        assert frames(client.events()) == [(Opcode.CLOSE, True, Close(4000, "done").serialize())]
        assert "end" not in carrier.kinds()  # waiting for the client's close frame
        client.flush()  # websockets' client answers the close frame
        await turns()
        assert carrier.kinds()[-1] == "end"
        session.lost(None)
        await turns()
        assert seen == [{"type": "websocket.disconnect", "code": 4000, "reason": "done"}]

    asyncio.run(scenario())


def test_message_over_max_size_fails_with_1009(caplog):
    log = []

    async def scenario():
        session, carrier, client = await opened(accept_app(log), ws_max_size=1000)
        client.send("send_binary", b"x" * 1001)
        await turns()
        [(opcode, _, payload)] = frames(client.events())
        assert opcode == Opcode.CLOSE and Close.parse(payload).code == CloseCode.MESSAGE_TOO_BIG
        assert carrier.kinds()[-1] == "end"
        session.lost(None)
        await turns()
        assert log[-1]["type"] == "websocket.disconnect" and log[-1]["code"] == 1009
        assert all(message.get("bytes") is None for message in log[1:])

    caplog.set_level(logging.INFO, logger="fastserve.error")
    asyncio.run(scenario())
    assert any("close code 1009" in record.getMessage() for record in caplog.records)


def test_permessage_deflate_negotiated_from_the_request():
    log = []
    offer = b"permessage-deflate; client_max_window_bits"

    async def scenario():
        headers = [*H2_HEADERS, (b"sec-websocket-extensions", offer)]
        session, carrier = extended_connect(accept_app(log), headers)
        await turns()
        answer = carrier.calls[0][1][b"sec-websocket-extensions"].decode()
        assert answer.startswith("permessage-deflate")
        [(name, params)] = parse_extension(answer)
        extension = ClientPerMessageDeflateFactory(client_max_window_bits=True).process_response_params(params, [])
        client = Client(session, carrier, [extension])
        text = "compress me " * 100  # above --ws-deflate-threshold (1024 bytes): compressed
        client.send("send_text", text.encode())
        await turns()
        assert log[-1] == {"type": "websocket.receive", "text": text}
        written = b"".join(call[1] for call in carrier.calls if call[0] == "write")
        assert len(written) < len(text) // 4  # the echo went out compressed (RSV1)
        assert written[0] & 0x40
        assert frames(client.events()) == [(Opcode.TEXT, True, text.encode())]  # and inflates back
        session.lost(None)
        await turns()

    asyncio.run(scenario())


def test_deflate_is_not_negotiated_when_the_server_turns_it_off():
    async def scenario():
        headers = [*H2_HEADERS, (b"sec-websocket-extensions", b"permessage-deflate")]
        session, carrier = extended_connect(accept_app([]), headers, ws_per_message_deflate=False)
        await turns()
        assert b"sec-websocket-extensions" not in carrier.calls[0][1]
        session.lost(None)
        await turns()

    asyncio.run(scenario())


# -- the server's side --------------------------------------------------------------------------------
def test_shutdown_closes_with_1012_and_abort_resets_the_stream():
    log = []

    async def scenario():
        session, carrier, client = await opened(accept_app(log))
        session.shutdown()
        await turns()
        [(opcode, _, payload)] = frames(client.events())
        assert opcode == Opcode.CLOSE and Close.parse(payload).code == CloseCode.SERVICE_RESTART
        assert log[-1] == {"type": "websocket.disconnect", "code": 1012, "reason": "server shutting down"}
        session.abort()  # the client never answered: graceful shutdown timed out
        assert carrier.kinds()[-1] == "abort"
        session.lost(None)
        await turns()

    asyncio.run(scenario())


def test_client_end_stream_without_a_close_frame_is_1006():
    log = []

    async def scenario():
        session, carrier, client = await opened(accept_app(log))
        session.feed_eof()  # END_STREAM, no close frame
        await turns()
        assert carrier.kinds()[-1] == "end"  # our side ends too
        session.lost(None)
        await turns()
        assert log[-1]["type"] == "websocket.disconnect" and log[-1]["code"] == 1006

    asyncio.run(scenario())
