"""--ws none, keepalive pings, --no-ws-per-message-deflate and graceful shutdown of open WebSockets.

The keepalive and deflate tests and the handshake timeout also run over HTTP/2 (tests/wsclient_h2.py);
shutdown with 1012 over HTTP/2 is in tests/test_h2_websocket_live.py."""

from __future__ import annotations

import asyncio
import time
import zlib

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, Opcode

from fastserve.config import Config, ConfigError

from .helpers import ServerProcess, raw_request, status_of
from .wsclient import PING, TEXT, RawWebSocket, frame, handshake_request
from .wsclient_h2 import (
    H2_TRANSPORTS,
    TARGET_IDS,
    TARGETS,
    H2Session,
    Target,
    opened,
    start_target,
)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_ws_none_serves_upgrades_as_plain_http_with_body(serve, impl):
    http, loop = impl
    server = serve("apps.ws:app", "--http", http, "--loop", loop, "--ws", "none")
    request = handshake_request("/ws/echo", extra="Content-Length: 5\r\n") + b"hello"
    response = raw_request(server.port, request + b"GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 200, response
    assert response.count(b"HTTP/1.1 200 ") == 2, response  # the connection stays HTTP after it
    assert b"http:hello" in response

    chunked = handshake_request("/ws/echo", extra="Transfer-Encoding: chunked\r\n") + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    response = raw_request(server.port, chunked + b"GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert response.count(b"HTTP/1.1 200 ") == 2 and b"http:abcde" in response, response

    async def scenario():
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{server.port}/ws/echo"):
                pass
        return info.value.response.status_code

    assert run(scenario()) == 200


@pytest.fixture(scope="module", params=TARGETS, ids=TARGET_IDS)
def keepalive_target(request):
    target = start_target(request.param, "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3",
                          "--no-ws-per-message-deflate")
    yield target
    target.server.stop()


def test_ping_timeout_closes_with_1011_and_ends_the_app(keepalive_target):
    server = keepalive_target.server
    start = len(server.lines)
    name = f"silent-{keepalive_target.transport}"
    if keepalive_target.transport == "http1.1":
        ws = RawWebSocket(server.port, f"/ws/record?name={name}")
        try:
            opcode, _ = ws.recv_frame()
            assert opcode == PING  # ... which this client never answers
            started = time.monotonic()
            assert ws.recv_close() == (1011, "keepalive ping timeout")
            assert time.monotonic() - started < 3
            assert ws.closed_by_server()
        finally:
            ws.close()
    else:
        assert_unanswered_ping_closes_the_stream(keepalive_target, name)
    server.wait_for_line(f"{name}: disconnect 1011 keepalive ping timeout", start=start)
    assert server.wait_for_line("did not answer a ping", start=start).startswith("INFO:")


def assert_unanswered_ping_closes_the_stream(target: Target, name: str) -> None:
    """HTTP/2: the ping is read but never answered; then the close (1011) and the stream's end."""
    with opened(target, f"/ws/record?name={name}") as ws:
        assert isinstance(ws, H2Session)
        opcode, _ = ws.frame_unanswered()
        assert opcode == PING
        started = time.monotonic()
        opcode, payload = ws.frame_unanswered()
        assert (opcode, Close.parse(payload)) == (Opcode.CLOSE, Close(1011, "keepalive ping timeout"))
        assert time.monotonic() - started < 3
        ws.client.pump(lambda: ws.ws.stream.ended or ws.ws.stream.reset is not None)


def test_answered_pings_keep_the_connection_open(keepalive_target):
    with opened(keepalive_target, "/ws/echo") as ws:
        ws.idle(1.2)  # several ping intervals and timeouts
        ws.send("alive")
        assert ws.recv() == "alive"


def test_deflate_off_is_not_negotiated(keepalive_target):
    with opened(keepalive_target, "/ws/echo", deflate=True) as ws:
        ws.send("q" * 50_000)
        assert ws.recv() == "q" * 50_000
    assert ws.header("sec-websocket-extensions") is None


def compressed_text(message: bytes) -> bytes:
    """A compressed client text frame (RFC 7692 7.2.1: a fresh context, the sync tail removed)."""
    deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -9)
    payload = deflater.compress(message) + deflater.flush(zlib.Z_SYNC_FLUSH)
    assert payload.endswith(b"\x00\x00\xff\xff")
    return frame(TEXT, payload[:-4], rsv=0x40)


@pytest.mark.parametrize("threshold", [None, "0", "300"])
def test_deflate_threshold_sends_small_messages_uncompressed(serve, threshold):
    """--ws-deflate-threshold (default 1024): the server compresses what the app sends only from
    that size on; smaller messages go out with RSV1 clear, whatever the client sent compressed.
    The compressed replies share one context (takeover), so they inflate in order."""
    args = () if threshold is None else ("--ws-deflate-threshold", threshold)
    server = serve("apps.ws:app", "--ws-deflate-level", "9", *args)
    smallest_compressed = 1024 if threshold is None else int(threshold)
    ws = RawWebSocket(server.port, extra="Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
    inflater = zlib.decompressobj(-15)
    try:
        assert "permessage-deflate" in ws.response_head
        for size in (100, 400, 1023, 1024, 5000, 100, 5000):
            message = (b'{"seq":%d,"text":"' % size).ljust(size - 2, b"x") + b'"}'
            ws.send(compressed_text(message))
            b1, b2 = ws._read_exact(2)  # the reply's header, for its RSV1 bit
            ws.buffer = bytes((b1, b2)) + ws.buffer
            opcode, payload = ws.recv_frame()
            assert opcode == TEXT and b1 & 0x80, hex(b1)
            if size >= smallest_compressed:
                assert b1 & 0x40, f"a {size}-byte message went out uncompressed"
                assert len(payload) < size
                payload = inflater.decompress(payload + b"\x00\x00\xff\xff")
            else:
                assert not b1 & 0x40, f"a {size}-byte message went out compressed"
            assert payload == message
    finally:
        ws.close()


def test_shutdown_closes_websockets_with_1012(serve, impl):
    http, loop = impl
    server = serve("apps.ws:app", "--http", http, "--loop", loop, "--timeout-graceful-shutdown", "20")

    async def scenario():
        async with connect(f"ws://127.0.0.1:{server.port}/ws/record?name=shutdown") as ws:
            await ws.send("x")
            started = time.monotonic()
            server.proc.send_signal(2)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code, time.monotonic() - started

    code, elapsed = run(scenario())
    assert code == 1012
    assert server.proc.wait(10) == 0
    assert elapsed < 5, "shutdown must not wait (--timeout-graceful-shutdown 20) for long-lived connections"
    server.wait_for_line("shutdown: disconnect 1012 server shutting down")


def test_shutdown_does_not_hang_on_a_client_ignoring_the_close(serve):
    server = serve("apps.ws:app", "--timeout-graceful-shutdown", "1")
    ws = RawWebSocket(server.port, "/ws/record?name=deaf")
    try:
        started = time.monotonic()
        assert server.stop(timeout=8) == 0
        assert time.monotonic() - started < 4
        assert ws.recv_close()[0] == 1012
    finally:
        ws.close()


def test_wss_over_tls(serve, impl, tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key_file, cert_file, ca_file = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(key_file)
    cert.cert_chain_pems[0].write_to_path(cert_file)
    ca.cert_pem.write_to_path(ca_file)
    http, loop = impl
    server = serve("apps.ws:app", "--http", http, "--loop", loop, "--ssl-keyfile", str(key_file), "--ssl-certfile", str(cert_file))
    context = ssl.create_default_context(cafile=str(ca_file))

    async def scenario():
        async with connect(f"wss://127.0.0.1:{server.port}/ws/echo", ssl=context) as ws:
            await ws.send("secret ✓" * 10_000)
            assert await ws.recv() == "secret ✓" * 10_000
        async with connect(f"wss://127.0.0.1:{server.port}/ws/scope", ssl=context) as ws:
            return __import__("json").loads(await ws.recv())["scheme"]

    assert run(scenario()) == "wss"


def test_shutdown_refuses_a_pending_handshake_with_503(serve):
    server = serve("apps.ws:app", "--timeout-graceful-shutdown", "10")
    ws_sock = __import__("socket").create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        ws_sock.sendall(handshake_request("/ws/slow-accept?delay=0.5"))
        time.sleep(0.2)  # the app is deciding
        started = time.monotonic()
        server.proc.send_signal(2)
        response = ws_sock.recv(4096)
        assert status_of(response) == 503, response
        assert server.proc.wait(5) == 0
        assert time.monotonic() - started < 3
    finally:
        ws_sock.close()
    server.wait_for_line("slow-accept: ClientDisconnected")


def test_ws_auto_without_the_engine_serves_plain_http(serve, tmp_path):
    """A stand-in ``websockets`` package that cannot be imported, ahead of the real one."""
    fake = tmp_path / "websockets"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('simulated: websockets is not installed')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    server = serve("apps.ws:app", "--ws", "auto", env=env)
    server.wait_for_line("WebSocket support is off")
    response = raw_request(server.port, handshake_request("/ws/echo", extra="Content-Length: 2\r\nConnection: Upgrade, close\r\n") + b"ok")
    assert status_of(response) == 200 and b"http:ok" in response, response

    explicit = ServerProcess("apps.ws:app", "--ws", "websockets", env=env, wait_for=None).start()
    try:
        assert explicit.proc.wait(20) != 0
    finally:
        explicit.stop()
    assert "--ws websockets needs the websockets package" in explicit.output


def test_upgrade_after_http_requests_on_one_connection(serve, impl):
    """Sequential and pipelined: the 101 follows the earlier responses, and the HTTP keep-alive
    timer no longer applies once the connection is a WebSocket."""
    import socket

    from .wsclient import TEXT, frame

    http, loop = impl
    server = serve("apps.ws:app", "--http", http, "--loop", loop, "--timeout-keep-alive", "0.3")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1")
        assert sock.recv(4096).endswith(b"http:1")
        pipelined = b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n2" + handshake_request("/ws/echo")
        sock.sendall(pipelined + frame(TEXT, b"early"))
        received = b""
        while b"early" not in received:
            received += sock.recv(4096)
        assert received.index(b"http:2") < received.index(b"HTTP/1.1 101 ") < received.index(b"early")
        time.sleep(0.8)  # well past --timeout-keep-alive
        sock.sendall(frame(TEXT, b"still open"))
        assert sock.recv(4096) == b"\x81\x0astill open"


def test_open_websockets_count_for_limit_connections(serve):
    server = serve("apps.ws:app", "--limit-connections", "2")
    echo = f"ws://127.0.0.1:{server.port}/ws/echo"

    async def scenario():
        async with connect(echo) as first, connect(echo):
            with pytest.raises(asyncio.TimeoutError):  # (the builtin TimeoutError only from 3.11)
                async with connect(echo, open_timeout=0.7):
                    pass
            await first.close()
            async with connect(echo, open_timeout=5) as third:  # accepted once a slot is free
                await third.send("in")
                return await third.recv()

    assert run(scenario()) == "in"


def test_handshake_timeout_answers_503_and_tells_the_app(serve, impl):
    http, loop = impl
    server = serve("apps.ws:app", "--http", http, "--loop", loop, "--timeout-ws-handshake", "1")

    async def scenario():
        started = time.monotonic()
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{server.port}/ws/slow-accept?delay=1.6"):
                pass
        return info.value.response.status_code, time.monotonic() - started

    status, elapsed = run(scenario())
    assert status == 503 and 0.8 < elapsed < 2.5
    server.wait_for_line("handshake not answered by the app within 1.0s")
    server.wait_for_line("slow-accept: ClientDisconnected")  # the late accept fails cleanly in the app
    assert run(_echo_once(server.port)) == "still serving"


@pytest.mark.parametrize("transport", H2_TRANSPORTS)
def test_handshake_timeout_answers_503_over_http2(transport):
    target = start_target((transport, ("httptools", "uvloop")), "--timeout-ws-handshake", "1")
    try:
        started = time.monotonic()
        with opened(target, "/ws/slow-accept?delay=1.6") as ws:
            assert (ws.accepted, ws.status) == (False, 503)
        assert 0.8 < time.monotonic() - started < 2.5
        target.server.wait_for_line("handshake not answered by the app within 1.0s")
        target.server.wait_for_line("slow-accept: ClientDisconnected")
        with opened(target, "/ws/echo") as ws:
            ws.send("still serving")
            assert ws.recv() == "still serving"
        assert "Traceback" not in target.server.output
    finally:
        target.server.stop()


async def _echo_once(port):
    async with connect(f"ws://127.0.0.1:{port}/ws/echo") as ws:
        await ws.send("still serving")
        return await ws.recv()


@pytest.mark.parametrize("name, value, problem", [
    ("ws_deflate_level", 0, "--ws-deflate-level: must be between 1 and 9; got 0"),
    ("ws_deflate_level", 10, "--ws-deflate-level: must be between 1 and 9; got 10"),
    ("ws_deflate_threshold", -1, "--ws-deflate-threshold: must not be negative; got -1"),
])
def test_deflate_options_are_checked(name, value, problem):
    with pytest.raises(ConfigError) as info:
        Config(app="apps.ws:app", **{name: value})
    assert str(info.value) == problem


def test_messages_that_end_their_deflate_stream_are_each_inflated(serve):
    """A client may end each compressed message's DEFLATE stream (BFINAL, Z_FINISH): every
    message is then a new stream, and each is inflated (not an empty message after the first)."""
    server = serve("apps.ws:app")
    ws = RawWebSocket(server.port, extra="Sec-WebSocket-Extensions: permessage-deflate\r\n")
    try:
        for word in (b"first", b"second", b"third"):
            deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            ws.send(frame(TEXT, deflater.compress(word * 10) + deflater.flush(zlib.Z_FINISH), rsv=0x40))
            assert ws.recv_frame() == (TEXT, word * 10)  # under the threshold: sent back uncompressed
    finally:
        ws.close()
