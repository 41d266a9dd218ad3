"""The pure parts of the WebSocket handshake, without sockets."""

from __future__ import annotations

import pytest
from websockets.server import ServerProtocol

from fastserve.http.errors import InvalidResponse
from fastserve.http.protocol import UpgradeRequest
from fastserve.websocket.handshake import (
    DenialResponse,
    complete_accept,
    offered_subprotocols,
    websockets_request,
)
from fastserve.websocket.upgraded import UpgradedTransport

KEY = (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")


def upgrade_request(*extra):
    headers = [(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"), KEY,
               (b"sec-websocket-version", b"13"), *extra]
    return UpgradeRequest("/chat", b"/chat", b"a=1", headers, "1.1", ("127.0.0.1", 5), "http")


class FakeState:
    default_header_items = [(b"server", b"fastserve"), (b"date", b"today")]


def test_offered_subprotocols_across_headers():
    headers = [(b"sec-websocket-protocol", b"a, b"), (b"other", b"x"), (b"sec-websocket-protocol", b" c ,")]
    assert offered_subprotocols(headers) == ["a", "b", "c"]


def test_accept_key_from_the_parsed_request():
    response = ServerProtocol().accept(websockets_request(upgrade_request()))
    assert response.status_code == 101
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3


def test_complete_accept_adds_app_headers_and_subprotocol():
    response = ServerProtocol().accept(websockets_request(upgrade_request((b"sec-websocket-protocol", b"v1"))))
    message = {"subprotocol": "v1", "headers": [(b"X-Extra", b"1"), (b"Upgrade", b"ignored")]}
    assert complete_accept(response, message, FakeState.default_header_items) == "v1"
    assert response.headers["X-Extra"] == "1"
    assert response.headers.get_all("Upgrade") == ["websocket"]
    assert response.headers["Sec-WebSocket-Protocol"] == "v1"
    assert response.headers["server"] == "fastserve"
    assert len(response.headers.get_all("date")) == 1


@pytest.mark.parametrize("headers", [[(b"x", b"a\r\nb")], [(b"bad name", b"v")], [("str", b"v")]])
def test_complete_accept_refuses_malformed_headers(headers):
    response = ServerProtocol().accept(websockets_request(upgrade_request()))
    with pytest.raises(InvalidResponse):
        complete_accept(response, {"headers": headers}, [])


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


def test_denial_response_refuses_header_injection():
    with pytest.raises(InvalidResponse):
        DenialResponse({"status": 400, "headers": [(b"x", b"1\r\nset-cookie: evil")]}, FakeState())
