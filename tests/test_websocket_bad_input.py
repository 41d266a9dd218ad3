"""Malformed WebSocket input, sent over raw sockets: each gets a clear close code or 4xx, an
info-level log line, and the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib

import pytest
from websockets.asyncio.client import connect

from .helpers import ServerProcess, raw_request, status_of
from .wsclient import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawWebSocket, frame, handshake_request
from .wsclient_h2 import H2_TRANSPORTS, H2Session, WebSocket, opened, start_target

MAX_SIZE = 65536


@pytest.fixture(scope="module")
def server(module_impl):
    http, loop = module_impl
    server = ServerProcess("apps.ws:app", "--http", http, "--loop", loop, "--ws-max-size", str(MAX_SIZE))
    server.start()
    yield server
    server.stop()


def expect_failure(server, payload: bytes, code: int, log_text: str) -> None:
    """Send ``payload`` on an open connection while a healthy client is also connected."""
    start = len(server.lines)

    async def scenario():
        async with connect(f"ws://127.0.0.1:{server.port}/ws/echo") as healthy:
            ws = RawWebSocket(server.port)
            try:
                ws.send(payload)
                assert ws.recv_close()[0] == code
                assert ws.closed_by_server(), "the server must drop the connection after failing it"
            finally:
                ws.close()
            await healthy.send("still here")
            assert await healthy.recv() == "still here"

    asyncio.run(asyncio.wait_for(scenario(), 15))
    line = server.wait_for_line(f"(close code {code})", start=start)
    assert line.startswith("INFO:") and log_text in line, line


def test_reserved_opcode_is_1002(server):
    expect_failure(server, frame(0x3, b"x"), 1002, "invalid opcode")


def test_reserved_bits_without_extension_are_1002(server):
    expect_failure(server, frame(TEXT, b"x", rsv=0x20), 1002, "reserved bits")


def test_unmasked_client_frame_is_1002(server):
    expect_failure(server, frame(TEXT, b"hello", masked=False), 1002, "incorrect masking")


def test_continuation_without_start_is_1002(server):
    expect_failure(server, frame(CONT, b"x"), 1002, "unexpected continuation")


def test_control_frame_too_long_is_1002(server):
    expect_failure(server, frame(PING, b"p" * 126), 1002, "control frame too long")


def test_fragmented_control_frame_is_1002(server):
    expect_failure(server, frame(PING, b"p", fin=False), 1002, "fragmented control frame")


def test_close_frame_with_a_reserved_code_is_1002(server):
    expect_failure(server, frame(CLOSE, struct.pack("!H", 1005)), 1002, "invalid status code")


def test_invalid_utf8_text_is_1007(server):
    expect_failure(server, frame(TEXT, b"caf\xc3"), 1007, "invalid UTF-8")


def test_invalid_utf8_in_a_fragment_is_1007_without_waiting_for_the_end(server):
    payload = frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xff\xfe", fin=False)
    expect_failure(server, payload, 1007, "invalid UTF-8")


def test_message_above_max_size_is_1009(server):
    expect_failure(server, frame(BINARY, b"x" * (MAX_SIZE + 1)), 1009, "exceeds limit")


def test_fragmented_message_above_max_size_is_1009(server):
    half = b"x" * (MAX_SIZE // 2 + 1)
    expect_failure(server, frame(BINARY, half, fin=False) + frame(CONT, half), 1009, "exceeds limit")


def test_compressed_message_inflating_above_max_size_is_1009(server):
    """A deflate bomb: 1 MiB of zeros is about 1 KiB on the wire, but the limit is on the message."""
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(b"\0" * (1 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert payload.endswith(b"\x00\x00\xff\xff") and len(payload) < MAX_SIZE
    start = len(server.lines)
    ws = RawWebSocket(server.port, extra="Sec-WebSocket-Extensions: permessage-deflate\r\n")
    try:
        assert "permessage-deflate" in ws.response_head.lower()
        ws.send(frame(BINARY, payload[:-4], rsv=0x40))  # RSV1: compressed
        assert ws.recv_close()[0] == 1009
    finally:
        ws.close()
    assert server.wait_for_line("(close code 1009)", start=start).startswith("INFO:")


def test_message_at_max_size_is_accepted(server):
    ws = RawWebSocket(server.port)
    try:
        ws.send(frame(BINARY, b"y" * MAX_SIZE))
        assert ws.recv_frame() == (BINARY, b"y" * MAX_SIZE)
    finally:
        ws.close()


def test_client_ping_gets_a_pong(server):
    ws = RawWebSocket(server.port)
    try:
        ws.send(frame(PING, b"are you there"))
        assert ws.recv_frame() == (PONG, b"are you there")
    finally:
        ws.close()


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (handshake_request(key="not-base64!"), 400),
        (handshake_request(key="c2hvcnQ="), 400),  # decodes to 5 bytes, not 16
        (handshake_request(version="8"), 426),
        (handshake_request().replace(b"HTTP/1.1", b"HTTP/1.0"), 400),
        (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
    ],
    ids=["key-not-base64", "key-wrong-length", "version-8", "http-1.0", "key-missing"],
)
def test_bad_handshake_is_refused(server, request_bytes, status):
    start = len(server.lines)
    response = raw_request(server.port, request_bytes)
    assert status_of(response) == status, response
    if status == 426:
        assert b"sec-websocket-version: 13\r\n" in response.lower()
    line = server.wait_for_line("Refused a WebSocket handshake", start=start)
    assert line.startswith("INFO:"), line
    with socket.create_connection(("127.0.0.1", server.port)) as sock:  # the server is unharmed
        sock.sendall(handshake_request())
        assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")


def test_close_inside_a_fragmented_message_reports_the_servers_1002_to_the_app(serve):
    from .wsclient import close_frame, get_events

    server = serve("apps.ws:app")
    ws = RawWebSocket(server.port, "/ws/record?name=fragclose")
    ws.send(frame(TEXT, b"first half", fin=False))
    ws.send(close_frame(1000))  # a close frame where the continuation should be
    code, _ = ws.recv_close()
    ws.close()
    assert code == 1002
    server.wait_for_line("fragclose: disconnect 1002")  # the failure, not the client's 1000
    assert "fragclose: disconnect 1000" not in get_events(server.port)


# -- the same frame-level failures on a WebSocket over HTTP/2 (RFC 8441) ----------------------------
HALF = b"x" * (MAX_SIZE // 2 + 1)
H2_FAILURES = [
    pytest.param(frame(0x3, b"x"), 1002, "invalid opcode", id="reserved-opcode"),
    pytest.param(frame(TEXT, b"x", rsv=0x20), 1002, "reserved bits", id="reserved-bits"),
    pytest.param(frame(TEXT, b"hello", masked=False), 1002, "incorrect masking", id="unmasked"),
    pytest.param(frame(CONT, b"x"), 1002, "unexpected continuation", id="continuation-first"),
    pytest.param(frame(PING, b"p" * 126), 1002, "control frame too long", id="long-control"),
    pytest.param(frame(CLOSE, struct.pack("!H", 1005)), 1002, "invalid status code", id="close-1005"),
    pytest.param(frame(TEXT, b"caf\xc3"), 1007, "invalid UTF-8", id="bad-utf8"),
    pytest.param(frame(BINARY, b"x" * (MAX_SIZE + 1)), 1009, "exceeds limit", id="above-max-size"),
    pytest.param(frame(BINARY, HALF, fin=False) + frame(CONT, HALF), 1009, "exceeds limit", id="fragments-above-max-size"),
]


@pytest.fixture(scope="module", params=H2_TRANSPORTS)
def h2_target(request):
    target = start_target((request.param, ("httptools", "auto")), "--ws-max-size", str(MAX_SIZE))
    yield target
    target.server.stop()


@pytest.mark.parametrize("payload, code, log_text", H2_FAILURES)
def test_over_http2_bad_frames_close_their_stream_only(h2_target, payload, code, log_text):
    """The close code as over HTTP/1.1, then the stream ends; a WebSocket on another stream of the
    same connection keeps echoing (a WebSocket failure is not a connection error)."""
    start = len(h2_target.server.lines)
    with opened(h2_target, "/ws/echo", deflate=False) as bad:
        assert isinstance(bad, H2Session)
        healthy = WebSocket(bad.client, "/ws/echo")
        bad.ws._send_data(payload)
        opcode, data = bad.frame_unanswered()
        assert opcode == CLOSE and struct.unpack("!H", data[:2])[0] == code
        bad.client.pump(lambda: bad.ws.stream.ended or bad.ws.stream.reset is not None)
        healthy.send("send_text", b"still here")
        assert healthy.frames() == [(TEXT, b"still here")]
        assert bad.client.goaway is None
    line = h2_target.server.wait_for_line(f"(close code {code})", start=start)
    assert line.startswith("INFO:") and log_text in line, line


def test_over_http2_a_deflate_bomb_is_1009(h2_target):
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(b"\0" * (1 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    with opened(h2_target, "/ws/echo", deflate=True) as ws:
        assert isinstance(ws, H2Session) and "permessage-deflate" in (ws.header("sec-websocket-extensions") or "")
        ws.ws._send_data(frame(BINARY, payload[:-4], rsv=0x40))  # RSV1: compressed
        opcode, data = ws.frame_unanswered()
        assert opcode == CLOSE and struct.unpack("!H", data[:2])[0] == 1009
