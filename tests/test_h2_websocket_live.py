"""WebSockets over HTTP/2 (RFC 8441) end to end: a real fastserve process, an `h2` library client
on a real socket (cleartext prior knowledge, or TLS with ALPN h2) doing extended CONNECTs, with
websockets' sans-I/O ClientProtocol framing on each stream; both codecs. Also the seed documents'
Channels consumer over HTTP/2, and headless Chromium opening wss:// on its HTTP/2 connection.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import time

import h2.config
import h2.connection
import h2.settings
import pytest
import trustme
from hyperframe.frame import DataFrame, GoAwayFrame
from websockets.frames import Close, CloseCode, Opcode

from fastserve.http2.codec import NO_ERROR

from .h2_client import RawClient, codecs
from .helpers import TESTS, ServerProcess
from .test_files import rss_kib
from .wsclient_h2 import H2Client, WebSocket, split_frames

CODECS = ["zttp" if c.__name__ == "ZttpCodec" else "h2" for c in codecs()]
APP = "apps.ws:app"
NON_ASCII = "你好! héllo ✓ 🚀"


def start(serve, codec: str, *args: str, app: str = APP):
    return serve(app, "--http2-codec", codec, *args)


@pytest.mark.parametrize("codec", CODECS)
def test_echo_ping_and_close_next_to_a_plain_request(serve, codec):
    server = start(serve, codec)
    client = H2Client(server.port)
    assert client.conn.remote_settings.enable_connect_protocol == 1
    ws = WebSocket(client, "/ws/echo")
    assert ws.stream.status == 200 and b"sec-websocket-accept" not in ws.stream.headers
    other = WebSocket(client, "/ws/echo")  # two WebSockets and a request on one connection
    ws.send("send_text", NON_ASCII.encode())
    other.send("send_binary", b"\x00" * 100_000)  # more than a stream window's worth: credit returns
    ws.send("send_text", b"frag", False)
    ws.send("send_continuation", b"ment", True)
    ws.send("send_ping", b"p1")
    got = ws.frames(3)  # (the pong may overtake the app's echoes)
    assert sorted(got) == sorted([(Opcode.TEXT, NON_ASCII.encode()), (Opcode.TEXT, b"fragment"), (Opcode.PONG, b"p1")])
    assert [frame for frame in got if frame[0] == Opcode.TEXT][0][1] == NON_ASCII.encode()
    assert other.frames() == [(Opcode.BINARY, b"\x00" * 100_000)]
    assert client.get("/events").status == 200
    ws.send("send_close", CloseCode.NORMAL_CLOSURE, "done")
    [(opcode, payload)] = ws.frames()
    assert opcode == Opcode.CLOSE and Close.parse(payload).code == CloseCode.NORMAL_CLOSURE
    client.pump(lambda: ws.stream.ended)  # the server's END_STREAM after its close frame
    ws.end()
    other.send("send_text", b"still open")
    assert other.frames() == [(Opcode.TEXT, b"still open")]
    client.close()
    server.wait_for_line('"CONNECT /ws/echo HTTP/2" 200')


@pytest.mark.parametrize("codec", CODECS)
def test_scope_app_close_and_denial(serve, codec):
    server = start(serve, codec)
    client = H2Client(server.port)
    ws = WebSocket(client, "/ws/scope?x=1")
    [(opcode, data), (close_opcode, payload)] = ws.frames(2)
    scope = json.loads(data)
    assert (scope["type"], scope["http_version"], scope["scheme"], scope["path"]) == ("websocket", "2", "ws", "/ws/scope")
    assert scope["query_string"] == "x=1" and scope["headers"][0] == ["host", "127.0.0.1"]
    assert close_opcode == Opcode.CLOSE
    ws.end()
    denied = WebSocket(client, "/ws/deny?status=403")
    client.pump(lambda: denied.stream.ended)
    assert (denied.stream.status, denied.stream.body) == (403, b"no entry")
    assert denied.stream.headers[b"www-authenticate"] == b"Bearer"
    headed = WebSocket(client, "/ws/headers?pick=b", extra=[("sec-websocket-protocol", "a, b")])
    assert headed.stream.headers[b"x-ws-extra"] == b"yes" and headed.stream.headers[b"set-cookie"] == b"ws=1; Path=/"
    assert headed.frames() == [(Opcode.TEXT, b"accepted")]
    chosen = WebSocket(client, "/ws/subprotocol?pick=b", extra=[("sec-websocket-protocol", "a, b")])
    assert chosen.stream.headers[b"sec-websocket-protocol"] == b"b"
    assert chosen.frames() == [(Opcode.TEXT, b'["a", "b"]')]
    refused = WebSocket(client, "/ws/echo", extra=[("sec-websocket-version", "8")])
    client.pump(lambda: refused.stream.ended)
    assert refused.stream.status == 400
    assert client.goaway is None
    client.close()


@pytest.mark.parametrize("codec", CODECS)
def test_app_outcomes_as_on_http11(serve, codec):
    """The app's ways to end, as the HTTP/1.1 WebSocket tests see them: close before accept (403),
    raise before accept (500), raise after (1011), return while open (1000), close with a code."""
    server = start(serve, codec)
    client = H2Client(server.port)
    rejected = WebSocket(client, "/ws/reject")
    raised = WebSocket(client, "/ws/raise-before")
    client.pump(lambda: rejected.stream.ended and raised.stream.ended)
    assert (rejected.stream.status, raised.stream.status) == (403, 500)
    crashed = WebSocket(client, "/ws/raise-after")
    crashed.send("send_text", b"boom")
    [(opcode, payload)] = crashed.frames()
    assert opcode == Opcode.CLOSE and Close.parse(payload).code == CloseCode.INTERNAL_ERROR
    returned = WebSocket(client, "/ws/return")
    frames = returned.frames(2)
    assert frames[0] == (Opcode.TEXT, b"bye") and Close.parse(frames[1][1]).code == CloseCode.NORMAL_CLOSURE
    closed = WebSocket(client, "/ws/close?code=4001&reason=later")
    [(opcode, payload)] = closed.frames()
    assert Close.parse(payload) == Close(4001, "later")
    for ws in (crashed, returned, closed):
        ws.end()
    client.pump(lambda: all(ws.stream.ended for ws in (crashed, returned, closed)))
    client.close()
    server.wait_for_line("boom after accept")


@pytest.mark.parametrize("codec", CODECS)
def test_malformed_extended_connects_are_stream_errors(serve, codec):
    """No :scheme, no :path, :protocol on a GET, a plain CONNECT: RST_STREAM PROTOCOL_ERROR; a
    :protocol other than websocket: 400. One log line each, no traceback; the connection serves on."""
    server = start(serve, codec)
    client = H2Client(server.port, validate=False)
    base = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/ws/echo"),
            (":authority", "127.0.0.1"), ("sec-websocket-version", "13")]
    bad = {
        1: [f for f in base if f[0] != ":scheme"],
        3: [f for f in base if f[0] != ":path"],
        5: [(":method", "GET"), *base[1:]],
        7: [(":method", "CONNECT"), (":authority", "127.0.0.1:443")],
        9: [f if f[0] != ":protocol" else (":protocol", "chat") for f in base],
    }
    for stream_id, headers in bad.items():
        client.conn.send_headers(stream_id, headers, end_stream=False)
    client.flush()
    client.pump(lambda: all(s in client.streams and (client.streams[s].reset is not None or client.streams[s].ended)
                            for s in bad))
    assert [client.streams[s].reset for s in (1, 3, 5, 7)] == [1, 1, 1, 1]  # PROTOCOL_ERROR
    assert client.streams[9].status == 400
    ws = WebSocket(client, "/ws/echo")
    ws.send("send_text", b"fine")
    assert ws.frames() == [(Opcode.TEXT, b"fine")]
    assert client.goaway is None
    client.close()
    server.wait_for_line("not 'websocket'")
    assert "Traceback" not in server.output


@pytest.mark.parametrize("codec", CODECS)
def test_a_slow_websocket_does_not_stall_the_others_on_its_connection(serve, codec):
    """Per-stream credit (with zttp, the adapter holds back the credit zttp writes): a WebSocket
    whose app sleeps has its window run dry; another WebSocket on the same connection echoes at
    once meanwhile."""
    server = start(serve, codec, "--ws-max-queue", "2", "--timeout-graceful-shutdown", "1")
    client = H2Client(server.port)
    slow = WebSocket(client, "/ws/slow-reader?delay=5&n=1000")
    fast = WebSocket(client, "/ws/echo")
    conn = client.conn
    sent = 0
    while conn.local_flow_control_window(slow.stream_id) >= 1010 and sent < 1000:
        slow.send("send_binary", b"s" * 1000)
        sent += 1
    started = time.monotonic()
    fast.send("send_text", b"not stalled")
    assert fast.frames() == [(Opcode.TEXT, b"not stalled")]
    assert time.monotonic() - started < 3  # long before the slow app wakes up (5 s)
    assert slow.stream.body == b""  # (its reply comes after it wakes)
    assert conn.local_flow_control_window(slow.stream_id) < 1010  # its credit was withheld
    client.close()


@pytest.mark.parametrize("codec", CODECS)
def test_max_size_1009_and_permessage_deflate(serve, codec):
    server = start(serve, codec, "--ws-max-size", "10000")
    client = H2Client(server.port)
    compressed = WebSocket(client, "/ws/echo", deflate=True)
    assert compressed.protocol.extensions, compressed.stream.headers
    text = "squeeze " * 1000
    compressed.send("send_text", text.encode())
    assert compressed.frames() == [(Opcode.TEXT, text.encode())]
    assert len(compressed.stream.body) < 1000
    big = WebSocket(client, "/ws/echo")
    big.send("send_binary", b"x" * 20_000)
    [(opcode, payload)] = big.frames()
    assert opcode == Opcode.CLOSE and Close.parse(payload).code == CloseCode.MESSAGE_TOO_BIG
    client.close()
    server.wait_for_line("close code 1009")


@pytest.mark.parametrize("codec", CODECS)
def test_shutdown_closes_websockets_with_1012(serve, codec):
    """SIGTERM: GOAWAY, the WebSocket is closed with 1012; once the client answers the close and
    ends its stream, the connection closes and the server exits (not after a timeout)."""
    server = start(serve, codec)
    client = H2Client(server.port)
    ws = WebSocket(client, "/ws/record?name=h2")
    assert ws.stream.status == 200  # accepted by the app
    server.proc.send_signal(signal.SIGTERM)
    # h2's client takes no frame after a GOAWAY: from here the frames are read and written raw.
    ws.protocol.receive_data(ws.stream.body[ws.read:])
    pending, goaway, closes = b"", [], []
    deadline = time.monotonic() + 10
    while not (closes and goaway) and time.monotonic() < deadline:
        frames, pending = split_frames(pending + client.sock.recv(65536))
        goaway += [f.error_code for f in frames if isinstance(f, GoAwayFrame)]
        for frame in frames:
            if isinstance(frame, DataFrame) and frame.stream_id == ws.stream_id:
                ws.protocol.receive_data(frame.data)
        closes += [f for f in ws.protocol.events_received() if f.opcode == Opcode.CLOSE]
    assert goaway == [NO_ERROR]
    assert [Close.parse(f.data).code for f in closes] == [CloseCode.SERVICE_RESTART]
    started = time.monotonic()
    client.sock.sendall(RawClient.data(ws.stream_id, b"".join(ws.protocol.data_to_send()), end_stream=True))
    server.proc.wait(15)
    assert time.monotonic() - started < 5  # the session's close timeout (10 s) did not have to run
    server.wait_for_line("h2: disconnect 1012 server shutting down")
    client.close()


def test_channels_consumer_over_http2():
    """The seed documents' AsyncWebsocketConsumer (echoes {"message": ...}) reached over HTTP/2."""
    server = ServerProcess("chatproject.asgi:application", app_dir=TESTS / "apps", env={"REDIS_URL": ""}).start()
    try:
        client = H2Client(server.port)
        ws = WebSocket(client, "/ws/index/")
        assert ws.stream.status == 200
        ws.send("send_text", json.dumps({"message": NON_ASCII}).encode())
        [(opcode, data)] = ws.frames()
        assert json.loads(data) == {"message": NON_ASCII, "user": "AnonymousUser"}
        client.close()
        server.wait_for_line('"CONNECT /ws/index/ HTTP/2" 200')
    finally:
        server.stop()


@pytest.mark.parametrize("codec", CODECS)
def test_over_tls_the_scope_says_wss_and_carries_the_tls_extension(serve, codec, tls_files):
    key, cert = tls_files
    server = start(serve, codec, "--ssl-keyfile", key, "--ssl-certfile", cert)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # (the test CA is not needed here)
    context.set_alpn_protocols(["h2"])
    client = H2Client(server.port, tls=context)
    ws = WebSocket(client, "/ws/scope", scheme="https")
    [(_, data), _] = ws.frames(2)
    scope = json.loads(data)
    assert (scope["scheme"], scope["http_version"]) == ("wss", "2")
    assert scope["extensions"]["tls"]["tls_version"] in (0x0303, 0x0304)
    client.close()


def test_chromium_opens_the_seed_websocket_over_http2(tmp_path, tls_files):
    """Headless Chromium loads the seed page over https (ALPN h2); its wss:// WebSocket goes over
    that HTTP/2 connection (RFC 8441): the access log shows the extended CONNECT as HTTP/2."""
    from .test_websocket_django import CHROMIUM, read_page, run

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"SKIPPED LOUDLY: chromium not found at {CHROMIUM}; install Debian's chromium package "
                    "(apt-get install chromium, or `make system-deps` as root) to run the browser test")
    key, cert = tls_files
    server = ServerProcess("chatproject.asgi:application", "--ssl-keyfile", key, "--ssl-certfile", cert,
                           app_dir=TESTS / "apps", env={"REDIS_URL": ""}).start()
    try:
        url = f"https://localhost:{server.port}/"
        status, echo = run(read_page(url, tmp_path, "--ignore-certificate-errors"))
        assert (status, echo) == ("echoed", NON_ASCII), server.output
        server.wait_for_line('"GET / HTTP/2" 200')
        server.wait_for_line('"CONNECT /ws/index/ HTTP/2" 200')
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    issued.private_key_pem.write_to_path(key_path)
    issued.cert_chain_pems[0].write_to_path(cert_path)
    return str(key_path), str(cert_path)


@pytest.mark.parametrize("codec", CODECS)
def test_a_client_with_huge_windows_that_reads_nothing_is_bounded_and_timed_out(serve, codec):
    """A client that opens the largest windows there are (stream and connection: 2^31-1) and then
    reads nothing: the windows do not bound what the app's 64 KiB messages would pile up (125 MiB
    here), the connection's write pause does; --timeout-write then ends it, with one log line."""
    server = start(serve, codec, "--timeout-write", "2")
    before = rss_kib(server.proc.pid)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    client.initiate_connection()
    client.increment_flow_control_window(2**31 - 1 - 65_535)
    client.send_headers(1, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                            (":path", "/ws/flood?n=2000&size=65536"), (":authority", "127.0.0.1"),
                            ("sec-websocket-version", "13")], end_stream=False)
    sock.sendall(client.data_to_send())
    try:
        peak = before
        deadline = time.monotonic() + 10
        while TIMEOUT_LINE not in server.output and time.monotonic() < deadline:
            peak = max(peak, rss_kib(server.proc.pid))
            time.sleep(0.05)
        line = server.wait_for_line(TIMEOUT_LINE, timeout=1)
        assert "HTTP/2 connection" in line
        assert peak - before < 48 * 1024, f"RSS grew by {peak - before} KiB"  # (unbounded: 125 MiB and more)
        time.sleep(0.5)  # the session ends too: no second line for it
        assert sum(TIMEOUT_LINE in text for text in server.lines) == 1, server.output
        assert "Traceback" not in server.output
        assert client_is_cut_off(sock)
    finally:
        sock.close()
    assert client_gets_answers(server.port)  # the server goes on serving others


TIMEOUT_LINE = "(--timeout-write)"


def client_is_cut_off(sock: socket.socket) -> bool:
    """Reads what the server had sent: True if the connection then ends (EOF or reset)."""
    sock.settimeout(5)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:  # still open
        return False
    return True


def client_gets_answers(port: int) -> bool:
    client = H2Client(port)
    ws = WebSocket(client, "/ws/echo")
    ws.send("send_text", b"still here")
    got = ws.frames()
    client.close()
    return got == [(Opcode.TEXT, b"still here")]
