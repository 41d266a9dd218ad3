"""The ASGI extensions over HTTP/2 end to end: a real fastserve process, real clients (curl with
prior knowledge, httpx, a raw `h2` client on a socket), both codecs. Exact frames are checked in
process by tests/test_h2_extensions.py."""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import subprocess
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest

from .apps.extensions import CHECKSUM, LINKS, PARTS
from .test_files import MIB, make_file, open_fds_to, rss_kib
from .test_h2_connection import CODECS
from .test_h2_live import tls_files  # noqa: F401 (a fixture)

CURL = shutil.which("curl")


def curl(url: str, *args: str) -> subprocess.CompletedProcess:
    if CURL is None:
        pytest.skip("SKIPPED LOUDLY: curl is not installed (apt-get install curl)")
    return subprocess.run([CURL, "-sv", "--http2-prior-knowledge", "--max-time", "10", *args, url],
                          capture_output=True, timeout=20)


def received_lines(done: subprocess.CompletedProcess) -> list[bytes]:
    return [line.rstrip() for line in done.stderr.splitlines() if line.startswith(b"< ")]


@pytest.mark.parametrize("codec", CODECS)
def test_curl_sees_103_early_hints_and_the_trailers(serve, codec):
    server = serve("apps.extensions:app", "--http2-codec", codec)
    hinted = curl(server.url + "/early-hints")
    assert hinted.returncode == 0 and hinted.stdout == b"final", hinted.stderr
    lines = received_lines(hinted)
    assert lines[:3] == [b"< HTTP/2 103", *(b"< link: " + link for link in LINKS)]
    assert lines[3] == b"< HTTP/2 200"

    for extra in ((), ("-H", "TE: trailers")):  # HTTP/2 sends them either way (see H2Stream.send_trailers)
        done = curl(server.url + "/trailers", *extra)
        assert done.returncode == 0 and done.stdout == b"".join(PARTS), done.stderr
        lines = received_lines(done)
        assert lines[0] == b"< HTTP/2 200" and b"< trailer: x-checksum, x-parts" in lines
        # curl -v prints the trailers after the body's data, as received fields
        assert lines[-2:] == [b"< x-checksum: " + CHECKSUM, b"< x-parts: 2"], done.stderr
    server.wait_for_line('"GET /trailers HTTP/2" 200')


@pytest.mark.parametrize("codec", CODECS)
def test_starlette_file_response_over_http2(serve, codec, tmp_path):
    """FileResponse uses pathsend when the scope offers it: over HTTP/2 the body is the file, with
    its length; HEAD gets the length alone."""
    path = tmp_path / "file.bin"
    make_file(path, 3 * MIB + 123)
    server = serve("apps.files:app", "--http2-codec", codec)
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        offered = client.get(server.url + "/scope")
        assert offered.http_version == "HTTP/2"
        assert "http.response.pathsend" in offered.json()
        response = client.get(server.url + "/starlette", params={"path": str(path)})
        assert response.status_code == 200 and response.http_version == "HTTP/2"
        assert response.content == path.read_bytes()
        assert response.headers["content-length"] == str(3 * MIB + 123)
        head = client.head(server.url + "/starlette", params={"path": str(path)})
        assert head.headers["content-length"] == str(3 * MIB + 123) and head.content == b""
        part = client.get(server.url + "/zerocopy", params={"path": str(path), "offset": MIB, "count": 5000})
        assert part.content == path.read_bytes()[MIB : MIB + 5000]


@pytest.mark.parametrize("codec", CODECS)
def test_file_over_tls_http2(serve, codec, tmp_path, tls_files):  # noqa: F811
    """Over TLS with ALPN h2 the same: FileResponse's pathsend, the body equal to the file."""
    key, cert, ca = tls_files
    path = tmp_path / "file.bin"
    make_file(path, 2 * MIB + 7)
    server = serve("apps.files:app", "--http2-codec", codec, "--ssl-keyfile", key, "--ssl-certfile", cert)
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=ca), timeout=10) as client:
        response = client.get(f"https://127.0.0.1:{server.port}/starlette", params={"path": str(path)})
    assert response.http_version == "HTTP/2" and response.content == path.read_bytes()


class SlowH2Client:
    """One GET over a raw socket with a small receive buffer, read with the `h2` library; the
    window is granted back only as the bytes are read (a slow link)."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", port))
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", path.encode()),
                                   (b":authority", b"127.0.0.1")], end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        self.headers: dict[bytes, bytes] = {}
        self.reset: int | None = None

    def read(self, digest: hashlib._Hash | None = None) -> tuple[int, bool]:
        """Read once: (body bytes received, the stream ended)."""
        data = self.sock.recv(256 * 1024)
        assert data, "the server closed the connection"
        size, ended = 0, False
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.headers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                size += len(event.data)
                if digest is not None:
                    digest.update(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
            elif isinstance(event, h2.events.StreamReset):
                self.reset = event.error_code
        self.sock.sendall(self.conn.data_to_send())
        return size, ended

    def close(self) -> None:
        self.sock.close()


def file_digest(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def _file_to_a_slow_h2_reader(serve, codec: str, tmp_path, size: int) -> None:
    path = tmp_path / "big.bin"
    make_file(path, size)  # sparse, with random markers
    server = serve("apps.files:app", "--http2-codec", codec)
    pid = server.proc.pid
    with httpx.Client(http1=False, http2=True, timeout=10) as client:  # imports, warm
        assert client.get(server.url + "/zerocopy", params={"path": str(path), "offset": 0, "count": 4096}).status_code == 200
    before = rss_kib(pid)
    client = SlowH2Client(server.port, f"/starlette?path={path}")
    digest = hashlib.sha256()
    received, ended, peak, pause_at = 0, False, before, 256 * 1024
    try:
        while not ended:
            size_read, ended = client.read(digest)
            received += size_read
            if pause_at <= received < 4 * MIB:  # slow at first: the server's buffers fill up
                pause_at += 256 * 1024
                time.sleep(0.02)
                peak = max(peak, rss_kib(pid))
    finally:
        client.close()
    assert client.headers[b":status"] == b"200" and client.headers[b"content-length"] == b"%d" % size
    assert received == size and digest.hexdigest() == file_digest(path)
    assert peak - before < 20 * 1024, f"server RSS grew by {peak - before} KiB sending a file over HTTP/2"


@pytest.mark.parametrize("codec", CODECS)
def test_file_to_a_slow_http2_reader_keeps_memory_bounded(serve, codec, tmp_path):
    _file_to_a_slow_h2_reader(serve, codec, tmp_path, 16 * MIB)


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
def test_100_mib_file_to_a_slow_http2_reader(serve, codec, tmp_path):
    _file_to_a_slow_h2_reader(serve, codec, tmp_path, 100 * MIB)


@pytest.mark.parametrize("codec", CODECS)
def test_stream_reset_mid_file_closes_it_without_a_traceback(serve, codec, tmp_path):
    """RST_STREAM while the file goes out: the server closes the file, logs no error, and the same
    connection serves the next request."""
    path = tmp_path / "big.bin"
    make_file(path, 64 * MIB)
    server = serve("apps.files:app", "--http2-codec", codec)
    client = SlowH2Client(server.port, f"/starlette?path={path}")
    try:
        received = 0
        while received < MIB:
            received += client.read()[0]
        assert open_fds_to(server.proc.pid, str(path))  # still sending
        client.conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        client.sock.sendall(client.conn.data_to_send())
        deadline = time.monotonic() + 10
        while open_fds_to(server.proc.pid, str(path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not open_fds_to(server.proc.pid, str(path)), "the file is still open after the reset"
        client.conn.send_headers(3, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/hello"),
                                     (b":authority", b"127.0.0.1")], end_stream=True)
        client.sock.sendall(client.conn.data_to_send())
        body = b""
        for _ in range(200):
            data = client.sock.recv(256 * 1024)
            assert data
            events = client.conn.receive_data(data)
            client.sock.sendall(client.conn.data_to_send())
            body += b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == 3)
            if any(isinstance(e, h2.events.StreamEnded) and e.stream_id == 3 for e in events):
                break
        assert body == b"hello"
    finally:
        client.close()
    assert "Traceback" not in server.output and "ERROR" not in server.output, server.output
