"""HTTP/2 end to end: a real fastserve process, real clients (curl, httpx, nghttp, h2load), over
cleartext prior knowledge and TLS with ALPN, on both codecs.

nghttp and h2load come from the nghttp2-client package (`make system-deps`); without them their
tests skip, saying so.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time

import httpx
import pytest
import trustme

from .h2_client import PREFACE, codecs, parse_frames

CODECS = ["zttp" if c.__name__ == "ZttpCodec" else "h2" for c in codecs()]
APP = "apps.basic:app"
CURL = shutil.which("curl")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed: run `make system-deps` (apt package nghttp2-client) - HTTP/2 NOT TESTED with it")
    return path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    key_path, cert_path, ca_path = folder / "key.pem", folder / "cert.pem", folder / "ca.pem"
    cert.private_key_pem.write_to_path(key_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    ca.cert_pem.write_to_path(ca_path)
    return str(key_path), str(cert_path), str(ca_path)


def curl(*args: str) -> subprocess.CompletedProcess:
    if CURL is None:
        pytest.skip("curl is not installed")
    return subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True, timeout=20)


@pytest.mark.parametrize("codec", CODECS)
def test_curl_prior_knowledge(serve, codec):
    server = serve(APP, "--http2-codec", codec)
    result = curl("--http2-prior-knowledge", "-w", "\\n%{http_version}", server.url + "/scope")
    body, _, version = result.stdout.rpartition(b"\n")
    assert version == b"2", result
    scope = json.loads(body)
    assert scope["http_version"] == "2"
    assert scope["headers"][0] == ["host", f"127.0.0.1:{server.port}"]
    posted = subprocess.run(
        [CURL, "-sS", "--max-time", "10", "--http2-prior-knowledge", "--data-binary", "@-", server.url + "/echo"],
        input=b"z" * 300_000, capture_output=True, timeout=20,
    )
    assert posted.stdout == b"z" * 300_000
    server.wait_for_line('"POST /echo HTTP/2" 200 300000')


@pytest.mark.parametrize("codec", CODECS)
def test_curl_over_tls_selects_h2_by_alpn(serve, codec, tls_files):
    key, cert, ca = tls_files
    server = serve(APP, "--http2-codec", codec, "--ssl-keyfile", key, "--ssl-certfile", cert)
    url = f"https://127.0.0.1:{server.port}"
    result = curl("--cacert", ca, "--http2", "-w", "\\n%{http_version}", url + "/scope")
    body, _, version = result.stdout.rpartition(b"\n")
    assert version == b"2", result
    scope = json.loads(body)
    assert scope["scheme"] == "https" and scope["http_version"] == "2"
    assert scope["extensions"]["tls"]["tls_version"] in (0x0303, 0x0304)  # the ASGI tls extension
    result = curl("--cacert", ca, "--http1.1", "-w", "\\n%{http_version}", url + "/")
    assert result.stdout.endswith(b"\n1.1")  # ALPN http/1.1 still gets HTTP/1.1


@pytest.mark.parametrize("codec", CODECS)
def test_httpx_http2(serve, codec, tls_files):
    key, cert, ca = tls_files
    server = serve(APP, "--http2-codec", codec, "--ssl-keyfile", key, "--ssl-certfile", cert)
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=ca), base_url=f"https://127.0.0.1:{server.port}") as client:
        responses = [client.get("/stream", params={"n": "20", "size": "5000"}) for _ in range(3)]
        posted = client.post("/echo", content=b"q" * 200_000)
    assert all(r.http_version == "HTTP/2" and r.content == b"".join(bytes([97 + i % 26]) * 5000 for i in range(20))
               for r in responses)
    assert posted.content == b"q" * 200_000


def test_http2_off_keeps_alpn_at_http11(serve, tls_files):
    key, cert, ca = tls_files
    server = serve(APP, "--http2", "off", "--ssl-keyfile", key, "--ssl-certfile", cert)
    result = curl("--cacert", ca, "--http2", "-w", "\\n%{http_version}", f"https://127.0.0.1:{server.port}/")
    assert result.stdout.endswith(b"\n1.1")


@pytest.mark.parametrize("codec", CODECS)
def test_nghttp(serve, codec):
    nghttp = need("nghttp")
    server = serve(APP, "--http2-codec", codec)
    result = subprocess.run(
        [nghttp, "-n", "-s", "-m", "20", server.url + "/big?size=100000"], capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(b"200") >= 1 or b"complete" in result.stdout


@pytest.mark.parametrize("codec", CODECS)
def test_h2load_short_run(serve, codec):
    h2load = need("h2load")
    server = serve(APP, "--http2-codec", codec, "--no-access-log")
    result = subprocess.run(
        [h2load, "-n", "2000", "-c", "4", "-m", "10", server.url + "/"], capture_output=True, timeout=60
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out
    assert "2000 succeeded, 0 failed, 0 errored" in out, out


@pytest.mark.parametrize("codec", CODECS)
def test_preface_gets_http2_settings_and_bad_frames_a_goaway(serve, codec):
    """Prior knowledge on the raw socket: our SETTINGS come back; junk after the preface (read
    as a frame header announcing 16 MiB) is a connection error (GOAWAY) at once, not once 16 MiB
    have come, one log line, and the server serves the next client."""
    server = serve(APP, "--http2-codec", codec)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + b"\xff" * 20)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    kinds = [type(frame).__name__ for frame in parse_frames(data)]
    assert kinds[0] == "SettingsFrame" and "GoAwayFrame" in kinds, kinds
    server.wait_for_line("HTTP/2 connection error from")
    assert "Traceback" not in server.output
    assert curl("--http2-prior-knowledge", server.url + "/").stdout == b"Hello, world!"


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("codec", CODECS)
def test_h2c_upgrade(serve, codec, http):
    """`curl --http2 http://`: 101, then the request is answered as HTTP/2 stream 1 and the
    connection stays HTTP/2; a body (up to 64 KiB) is read first and is stream 1's (the raw
    socket test below sends one split across reads). A larger one
    is answered over HTTP/1.1 (the upgrade is the server's to take or not, RFC 9110 7.8)."""
    server = serve(APP, "--http2-codec", codec, "--http", http)
    result = curl("-v", "--http2", server.url + "/scope", server.url + "/big?size=100000")
    err = result.stderr.decode()
    assert "101 Switching Protocols" in err and err.count("< HTTP/2 200") == 2, err
    scope, _ = json.JSONDecoder().raw_decode(result.stdout.decode("latin-1"))  # the first of the two bodies
    assert scope["http_version"] == "2" and scope["headers"][0][0] == "host"
    assert result.stdout.endswith(b"x" * 100_000)
    server.wait_for_line('"GET /big?size=100000 HTTP/2" 200 100000')
    # (An echo under 32 KiB: curl 7.88 cannot buffer more arriving with the 101 in one read.)
    posted = curl("-v", "--http2", "--data-binary", "abc" * 10_000, server.url + "/echo")
    assert posted.stdout == b"abc" * 10_000 and "< HTTP/2 200" in posted.stderr.decode(), posted.stderr[-3000:]
    server.wait_for_line('"POST /echo HTTP/2" 200 30000')
    posted = curl("-v", "--http2", "--data-binary", "abcd" * 20_000, server.url + "/echo")
    assert posted.stdout == b"abcd" * 20_000 and "101" not in posted.stderr.decode()
    server.wait_for_line('"POST /echo HTTP/1.1" 200 80000')


def test_h2c_upgrade_with_bad_settings_is_refused(serve):
    server = serve(APP)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: !!!\r\n\r\n")
        response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 400 "), response
    assert b"HTTP2-Settings" in response
    server.wait_for_line("Invalid h2c upgrade: HTTP2-Settings or a request HTTP/2 refuses (400)")


@pytest.mark.parametrize("codec", CODECS)
def test_graceful_shutdown_sends_goaway_and_finishes_streams(serve, codec):
    """SIGTERM during a stream: GOAWAY(NO_ERROR, last stream 1) at once, stream 1 still answered
    whole, then the connection closes and the server exits."""
    import signal
    import threading

    import h2.config
    import h2.connection
    from hyperframe.frame import DataFrame, GoAwayFrame

    server = serve(APP, "--http2-codec", codec)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/sleep?t=1"),
                            (b":authority", b"x")], end_stream=True)
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(client.data_to_send())
        time.sleep(0.3)  # the request is in the app
        stopper = threading.Thread(target=server.stop, args=(signal.SIGTERM,))
        stopper.start()
        while data := sock.recv(65536):  # (h2's client would refuse frames after a GOAWAY: raw)
            received += data
        stopper.join()
    frames = parse_frames(received)
    kinds = [type(f).__name__ for f in frames]
    goaway = next(f for f in frames if isinstance(f, GoAwayFrame))
    assert (goaway.error_code, goaway.last_stream_id) == (0, 1)
    body = [f for f in frames if isinstance(f, DataFrame) and f.stream_id == 1]
    assert b"".join(f.data for f in body) == b"slept" and "END_STREAM" in body[-1].flags
    assert kinds.index("GoAwayFrame") < frames.index(body[-1])
    assert server.proc.returncode == 0


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_h2c_upgrade_body_split_across_reads(serve, http):
    import base64

    from hyperframe.frame import DataFrame, SettingsFrame

    server = serve(APP, "--http", http)
    settings = base64.urlsafe_b64encode(SettingsFrame(0).serialize_body()).rstrip(b"=")
    body = b"B" * 40_000
    head = (b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(head + body[:1000])
        time.sleep(0.2)
        sock.sendall(body[1000:] + PREFACE + SettingsFrame(0).serialize())
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    status, _, frames = data.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101 ")
    assert b"".join(f.data for f in parse_frames(frames) if isinstance(f, DataFrame) and f.stream_id == 1) == body


@pytest.mark.parametrize("codec", CODECS)
def test_bodiless_responses_go_out_at_once(serve, codec):
    """204, 304 and HEAD end the stream with the HEADERS frame, written right away (not held
    until the client's next frame or the idle timeout)."""
    server = serve(APP, "--http2-codec", codec)
    for args in (["-I", server.url + "/"], [server.url + "/status?code=204"], [server.url + "/status?code=304"]):
        started = time.monotonic()
        result = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", *args)
        assert result.stdout in (b"200", b"204", b"304") and time.monotonic() - started < 2, (args, result)


@pytest.mark.parametrize("codec", CODECS)
def test_h2load_uploads_and_downloads_under_small_windows(serve, codec, tmp_path):
    """Flow control both ways under load: 100 uploads of 300 kB echoed back, 40 downloads of 1 MB
    with the client's stream window at 64 KiB (h2load -w 16), 10 streams per connection."""
    h2load = need("h2load")
    server = serve(APP, "--http2-codec", codec, "--no-access-log")
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(range(256)) * 1172)  # 300,032 bytes
    runs = (
        [h2load, "-n", "100", "-c", "4", "-m", "10", "-d", str(upload), server.url + "/echo"],
        [h2load, "-n", "40", "-c", "4", "-m", "10", "-w", "16", "-W", "16", server.url + "/big?size=1000000"],
    )
    for command, data in zip(runs, (100 * 300_032, 40 * 1_000_000), strict=True):
        out = subprocess.run(command, capture_output=True, timeout=60, text=True).stdout
        assert " 0 failed, 0 errored, 0 timeout" in out and f"({data}) data" in out, out
    assert "Traceback" not in server.output


def test_http2_options_fail_at_start_not_per_connection(tmp_path, serve):
    """zttp with settings it cannot advertise, or --http2 on without a codec installed: one line
    and no start, rather than a failure at each HTTP/2 connection."""
    import os
    import sys

    from .helpers import TESTS, raw_request, status_of

    command = [sys.executable, "-m", "fastserve", APP, "--port", "0"]
    result = subprocess.run([*command, "--http2-codec", "zttp", "--http2-max-concurrent-streams", "10"],
                            capture_output=True, text=True, cwd=TESTS, timeout=30)
    assert result.returncode != 0 and "--http2-codec: zttp advertises fixed HTTP/2 settings" in result.stderr
    for name in ("zttp", "h2"):  # hide both codec libraries
        (tmp_path / f"{name}.py").write_text("raise ImportError('hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([*command, "--http2", "on"], capture_output=True, text=True, cwd=TESTS, env=env, timeout=30)
    assert result.returncode != 0, result.stderr
    assert "HTTP/2 needs the" in result.stderr and "Traceback" not in result.stderr, result.stderr
    server = serve(APP, env=env)  # --http2 auto without a codec: HTTP/2 is off, the server runs
    response = raw_request(server.port, PREFACE)
    assert status_of(response) == 400 and b"HTTP/2" in response


def test_prior_knowledge_behind_the_proxy_protocol(serve):
    """A PROXY protocol header, then the HTTP/2 preface (haproxy's h2c upstream with send-proxy):
    the stream's scope has the client the header names."""
    from hyperframe.frame import DataFrame

    from .h2_client import GET, RawClient

    server = serve(APP, "--proxy-protocol")
    raw = RawClient()
    request = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/scope"), *GET[3:]]
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.5 127.0.0.1 4711 80\r\n" + raw.preface() + raw.headers(1, request))
        data = body = b""
        while not body.endswith(b"}}"):  # the scope's JSON, whole
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
            body = b"".join(f.data for f in parse_frames(data) if isinstance(f, DataFrame) and f.stream_id == 1)
    scope = json.loads(body)
    assert scope["client"] == ["203.0.113.5", 4711] and scope["http_version"] == "2"


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("codec", CODECS)
def test_h2c_upgrade_with_a_1_mib_upload(serve, codec, http, tmp_path):
    """`curl --http2 http://` with a 1 MiB body: over the 64 KiB an upgrade reads before the switch
    (not an option: it is stream 1's initial window), so the request is answered over HTTP/1.1,
    whole, and the connection is not upgraded."""
    server = serve(APP, "--http2-codec", codec, "--http", http)
    body = bytes(range(256)) * 4096
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)
    posted = curl("-v", "--http2", "--data-binary", f"@{upload}", server.url + "/echo")
    err = posted.stderr.decode()
    assert posted.returncode == 0 and posted.stdout == body, err[-3000:]
    assert "101 Switching" not in err and "< HTTP/1.1 200" in err
    server.wait_for_line('"POST /echo HTTP/1.1" 200 1048576')


@pytest.mark.parametrize("codec", CODECS)
def test_an_upload_nobody_reads_stalls_only_its_own_stream(serve, codec):
    """One stream's app takes the first body message and then reads nothing for 5 s: its window
    runs dry (credit is returned as the app takes the body, with zttp too), while a 300 kB upload
    on another stream of the same connection is echoed at once."""
    from .wsclient_h2 import H2Client

    server = serve(APP, "--http2-codec", codec)
    client = H2Client(server.port)
    conn = client.conn
    post = [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1")]
    conn.send_headers(1, [*post, (":path", "/stalled-reader?t=5")])
    conn.send_data(1, b"s" * 1000)
    client.flush()
    time.sleep(0.3)  # the app has taken its first message and sleeps
    for _ in range(100):  # fill stream 1's window; the server must not credit it
        size = min(16_384, conn.local_flow_control_window(1))
        if size == 0:
            break
        conn.send_data(1, b"s" * size)
        client.flush()
        read_for(client, 0.2)  # any credit the server gives
    assert conn.local_flow_control_window(1) == 0
    started = time.monotonic()
    conn.send_headers(3, [*post, (":path", "/echo")])
    body = b"e" * 300_000
    while body:
        window = min(conn.local_flow_control_window(3), conn.outbound_flow_control_window, 16_384)
        if window:
            conn.send_data(3, body[:window], end_stream=len(body) <= window)
            body = body[window:]
            client.flush()
        else:
            client.pump(lambda: conn.local_flow_control_window(3) > 0 and conn.outbound_flow_control_window > 0)
    client.pump(lambda: 3 in client.streams and client.streams[3].ended)
    assert client.streams[3].status == 200 and len(client.streams[3].body) == 300_000
    assert time.monotonic() - started < 4  # long before stream 1's app wakes up (5 s)
    assert 1 not in client.streams or client.streams[1].status is None
    client.close()


def read_for(client, seconds: float) -> None:
    """Take in what the server sends for `seconds` (WINDOW_UPDATEs, say), whatever it is."""
    deadline = time.monotonic() + seconds
    client.sock.settimeout(0.05)
    try:
        while time.monotonic() < deadline:
            try:
                data = client.sock.recv(65536)
            except TimeoutError:
                continue
            for event in client.conn.receive_data(data):
                client._on(event)
            client.flush()
    finally:
        client.sock.settimeout(10)
