"""The pure parts of the WebSocket handshake, without sockets."""

from __future__ import annotations

import pytest
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

from fastserve.asgi.errors import InvalidResponse
from fastserve.websocket.deflate import agreed_params
from fastserve.websocket.handshake import (
    Accept,
    DenialResponse,
    Refusal,
    check_handshake,
    complete_accept,
    offered_subprotocols,
)
from fastserve.websocket.upgraded import UpgradedTransport

from .harness import upgrade_head

KEY = (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")


def upgrade_request(*extra):
    headers = [(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"), KEY,
               (b"sec-websocket-version", b"13"), *extra]
    return upgrade_head("/chat", b"/chat", b"a=1", headers, "1.1", ("127.0.0.1", 5), "http")


class FakeState:
    default_header_items = [(b"server", b"fastserve"), (b"date", b"today")]


def test_offered_subprotocols_across_headers():
    headers = [(b"sec-websocket-protocol", b"a, b"), (b"other", b"x"), (b"sec-websocket-protocol", b" c ,")]
    assert offered_subprotocols(headers) == ["a", "b", "c"]


def test_accept_key_from_the_parsed_request():
    decision = check_handshake(upgrade_request(), None)
    assert isinstance(decision, Accept)
    assert (b"Sec-WebSocket-Accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") in decision.headers  # RFC 6455 1.3
    assert decision.deflate is None  # no extension offered


def test_accept_carries_the_agreed_deflate_parameters():
    factories = [ServerPerMessageDeflateFactory(server_max_window_bits=12, client_max_window_bits=12)]
    offer = (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")
    decision = check_handshake(upgrade_request(offer), factories)
    assert isinstance(decision, Accept)
    answer = dict(decision.headers)[b"Sec-WebSocket-Extensions"]
    assert answer == b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    assert decision.deflate == {"server_max_window_bits": "12", "client_max_window_bits": "12"}
    offer = (b"sec-websocket-extensions", b"permessage-deflate; client_no_context_takeover")
    decision = check_handshake(upgrade_request(offer), [ServerPerMessageDeflateFactory()])
    assert isinstance(decision, Accept) and decision.deflate == {"client_no_context_takeover": None}
    decision = check_handshake(upgrade_request(offer), None)  # compression off: not agreed
    assert isinstance(decision, Accept) and decision.deflate is None


def test_agreed_params_read_the_answer():
    assert agreed_params(None) is None
    assert agreed_params("x-other; a=1") is None
    assert agreed_params('permessage-deflate;server_no_context_takeover; client_max_window_bits="10"') == {
        "server_no_context_takeover": None, "client_max_window_bits": "10"}


def test_handshake_refusals_are_decisions():
    old_version = upgrade_request()
    old_version.headers[4] = (b"sec-websocket-version", b"8")
    decision = check_handshake(old_version, None)
    assert isinstance(decision, Refusal)
    assert (decision.status, decision.headers) == (426, [(b"sec-websocket-version", b"13"), (b"upgrade", b"websocket")])
    no_key = upgrade_head("/", b"/", b"", [(b"upgrade", b"websocket"), (b"connection", b"upgrade")], "1.1", None, "http")
    decision = check_handshake(no_key, None)
    assert isinstance(decision, Refusal) and decision.status == 400
    assert decision.reason.startswith("Invalid WebSocket handshake: ")
    http10 = upgrade_head("/", b"/", b"", upgrade_request().headers, "1.0", None, "http")
    decision = check_handshake(http10, None)
    assert isinstance(decision, Refusal) and decision.status == 400 and "HTTP/1.0" in decision.reason


def test_complete_accept_adds_app_headers_and_subprotocol():
    decision = check_handshake(upgrade_request((b"sec-websocket-protocol", b"v1")), None)
    message = {"subprotocol": "v1", "headers": [(b"X-Extra", b"1"), (b"Upgrade", b"ignored")]}
    headers, subprotocol = complete_accept(decision, message, FakeState.default_header_items)
    assert subprotocol == "v1"
    names = [name.lower() for name, _ in headers]
    assert (b"X-Extra", b"1") in headers
    assert [value for name, value in headers if name.lower() == b"upgrade"] == [b"websocket"]
    assert (b"Sec-WebSocket-Protocol", b"v1") in headers
    assert (b"server", b"fastserve") in headers
    assert names.count(b"date") == 1


def test_accept_renders_as_a_101():
    decision = check_handshake(upgrade_request(), None)
    headers, _ = complete_accept(decision, {"headers": [(b"x-a", b"\xe9")]}, [])
    transport = RecordingTransport()
    UpgradedTransport(transport).accept(headers)
    head = transport.written
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n") and head.endswith(b"\r\nx-a: \xe9\r\n\r\n")
    assert b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" in head
    assert not transport.closed


@pytest.mark.parametrize("headers", [[(b"x", b"a\r\nb")], [(b"bad name", b"v")], [("str", b"v")], [(b"x", "str")]])
def test_complete_accept_refuses_malformed_headers(headers):
    decision = check_handshake(upgrade_request(), None)
    with pytest.raises(InvalidResponse):
        complete_accept(decision, {"headers": headers}, [])


class RecordingTransport:
    """Just what UpgradedTransport.deny uses."""

    def __init__(self):
        self.written, self.closed = b"", False

    def write(self, data):
        self.written += data

    def close(self):
        self.closed = True


def test_denial_response_bytes():
    denial = DenialResponse({"status": 401, "headers": [(b"www-authenticate", b"Bearer"),
                                                       (b"transfer-encoding", b"chunked")]}, FakeState())
    denial.add(b"no ")
    denial.add(b"entry")
    transport = RecordingTransport()
    UpgradedTransport(transport).deny(denial.status, denial.headers, denial.body())
    assert transport.written == (
        b"HTTP/1.1 401 Unauthorized\r\nserver: fastserve\r\ndate: today\r\nwww-authenticate: Bearer\r\n"
        b"content-length: 8\r\nconnection: close\r\n\r\nno entry"
    )
    assert transport.closed


def test_denial_response_keeps_the_apps_length_and_server():
    message = {"status": 200, "headers": [(b"Server", b"mine"), (b"content-length", b"2")]}
    denial = DenialResponse(message, FakeState())
    denial.add(b"ok")
    transport = RecordingTransport()
    UpgradedTransport(transport).deny(denial.status, denial.headers, denial.body())
    assert transport.written == (
        b"HTTP/1.1 200 OK\r\ndate: today\r\nServer: mine\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    )


@pytest.mark.parametrize("headers", [[(b"x", b"1\r\nset-cookie: evil")], [(b"x", "str")], [(b"x", b"\0")]])
def test_denial_response_refuses_header_injection(headers):
    with pytest.raises(InvalidResponse):
        DenialResponse({"status": 400, "headers": headers}, FakeState())


def test_websockets_internals_the_session_reads_and_writes():
    """What websockets_compat.py lists beyond websockets' documented API, against the installed
    version: the session's fast path depends on each meaning what it meant when it was written."""
    from websockets.exceptions import ProtocolError
    from websockets.frames import Close, Frame, Opcode

    from fastserve.websocket.websockets_compat import open_protocol, release, set_message_size

    def frame(opcode, data, fin=True):
        return Frame(opcode, data, fin).serialize(mask=True)

    protocol = open_protocol(100)
    assert (protocol.current_size, protocol.eof_sent, protocol.parser_exc) == (None, False, None)
    assert (protocol.close_rcvd, protocol.close_sent, protocol.extensions) == (None, None, [])
    protocol.receive_data(frame(Opcode.TEXT, b"abc", fin=False))
    assert protocol.current_size == 3  # the fragmented message's size so far
    protocol.receive_data(frame(Opcode.CONT, b"de"))
    assert protocol.current_size is None
    set_message_size(protocol, 95)  # as if the session had taken a 95-byte fragment itself
    protocol.receive_data(frame(Opcode.CONT, b"123456"))  # past the limit, counted from 95
    assert protocol.eof_sent and "after reading 95 bytes" in str(protocol.parser_exc)
    assert protocol.close_sent is not None and protocol.close_sent.code == 1009

    protocol = open_protocol(100)
    set_message_size(protocol, 1)
    protocol.receive_data(frame(Opcode.TEXT, b"x"))  # not a continuation: websockets refuses it
    assert isinstance(protocol.parser_exc, ProtocolError) and protocol.close_sent.code == 1002

    protocol = open_protocol(100)
    protocol.receive_data(frame(Opcode.CLOSE, Close(1000, "bye").serialize()))
    assert protocol.close_rcvd == Close(1000, "bye") and protocol.eof_sent
    release(protocol)
    assert protocol.parser.gi_frame is None  # the generator is closed: no reference cycle left
