"""pathsend and zerocopysend end to end: a real fastserve process, real sockets, sendfile.

Starlette's FileResponse uses http.response.pathsend whenever the scope offers it; strace shows
the body going out with sendfile (the bytes never pass through Python). Large files to a slow
reader keep the server's memory bounded, over plain TCP and TLS; a client leaving mid-file costs
no traceback and no descriptor. In-process behaviour (HEAD, lengths, order errors) is in
tests/test_inprocess_files.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import time

import httpx
import pytest

from .harness import parse_responses
from .helpers import TESTS, tls_certificate

STRACE = shutil.which("strace")
MIB = 1024 * 1024
TWO_IMPLS = pytest.mark.two_impls


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def make_file(path, size: int) -> dict[int, bytes]:
    """A sparse file of ``size`` bytes with random 4 KiB markers at a few offsets (checked on arrival)."""
    markers = {offset: os.urandom(4096) for offset in (0, size // 3, size - 4096)}
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in markers.items():
            f.seek(offset)
            f.write(data)
    return markers


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def read_head(sock) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def content_length(head: bytes) -> int:
    return int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))


def read_body_slowly(sock, first: bytes, length: int, pid: int, slow_until: int) -> tuple[bytearray, int]:
    """Read ``length`` body bytes, pausing often for the first ``slow_until`` of them (the server's
    socket buffer fills up); returns them and the highest server RSS seen meanwhile (KiB)."""
    body = bytearray(first)
    peak = rss_kib(pid)
    pause_at = 256 * 1024
    while len(body) < length:
        chunk = sock.recv(min(256 * 1024, length - len(body)))
        assert chunk, f"closed after {len(body)} of {length} bytes"
        body += chunk
        if pause_at <= len(body) < slow_until:  # every 256 KiB (a TLS read returns one record)
            pause_at += 256 * 1024
            time.sleep(0.02)
            peak = max(peak, rss_kib(pid))
    return body, peak


def small_buffer_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a slow link's window
    sock.settimeout(20)
    sock.connect(("127.0.0.1", port))
    return sock


def open_fds_to(pid: int, path: str) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                found.append(fd)
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return tls_certificate(tmp_path_factory.mktemp("tls"))


# -- sendfile, proven with strace ------------------------------------------------------------------
@TWO_IMPLS
def test_starlette_file_response_goes_out_with_sendfile(serve, impl, tmp_path):
    if STRACE is None:
        pytest.skip("SKIPPED LOUDLY: strace is not installed (make system-deps installs it): "
                    "cannot prove the file went out with sendfile")
    http, loop = impl
    path = tmp_path / "file.bin"
    data = os.urandom(3 * MIB + 17)
    path.write_bytes(data)
    trace = tmp_path / "trace.txt"
    command = [STRACE, "-f", "-qq", "-e", "trace=sendfile", "-e", "signal=none", "-o", str(trace),
               sys.executable, "-m", "fastserve", "apps.files:app", "--app-dir", str(TESTS), "--port", "0",
               "--http", http, "--loop", loop]
    server = serve("apps.files:app", command=command)
    with httpx.Client() as client:
        assert client.get(f"{server.url}/scope").json() == ["http.response.early_hint", "http.response.pathsend", "http.response.trailers", "http.response.zerocopysend"]
        response = client.get(f"{server.url}/starlette", params={"path": str(path)})
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-length"] == str(len(data))
    os.killpg(server.proc.pid, signal.SIGINT)  # strace and the server alike
    server.stop()
    calls = [line for line in trace.read_text().splitlines() if "sendfile" in line]
    sent = sum(int(m.group(1)) for m in (re.search(r"= (\d+)$", line) for line in calls) if m)
    assert sent == len(data), "\n".join(calls[:20])


# -- plain TCP -------------------------------------------------------------------------------------
@TWO_IMPLS
def test_pipelined_file_responses_keep_their_order(serve, impl, tmp_path):
    http, loop = impl
    path = tmp_path / "file.bin"
    data = os.urandom(2 * MIB + 5)
    path.write_bytes(data)
    server = serve("apps.files:app", "--http", http, "--loop", loop)
    requests = (get("/hello") + get(f"/starlette?path={path}") + get(f"/zerocopy?path={path}&offset=1000&count=1500000")
                + get("/hello"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(requests)
        received = b""
        while received.count(b"hello") < 2 or not received.endswith(b"hello"):
            chunk = sock.recv(MIB)
            assert chunk, "closed early"
            received += chunk
    responses = parse_responses(received)
    assert [r.status for r in responses] == [200] * 4
    assert [r.body for r in responses] == [b"hello", data, data[1000:1501000], b"hello"]


@TWO_IMPLS
def test_file_over_a_unix_socket(serve, impl, tmp_path):
    http, loop = impl
    path = tmp_path / "file.bin"
    data = os.urandom(3 * MIB + 1)
    path.write_bytes(data)
    uds = str(tmp_path / "fastserve.sock")
    serve("apps.files:app", "--http", http, "--loop", loop, "--uds", uds, wait_for="running on unix socket")
    with httpx.Client(transport=httpx.HTTPTransport(uds=uds)) as client:
        assert client.get("http://localhost/starlette", params={"path": str(path)}).content == data
        part = client.get("http://localhost/zerocopy", params={"path": str(path), "offset": 7, "count": 2 * MIB})
        assert part.content == data[7 : 7 + 2 * MIB]


@TWO_IMPLS
def test_large_file_to_a_slow_reader_keeps_memory_bounded(serve, impl, tmp_path):
    http, loop = impl
    size = 100 * MIB  # sparse: quick to make, and only the markers are data
    path = tmp_path / "big.bin"
    markers = make_file(path, size)
    server = serve("apps.files:app", "--http", http, "--loop", loop)
    pid = server.proc.pid
    warm = httpx.get(f"{server.url}/zerocopy", params={"path": str(path), "offset": 0, "count": 4096})  # imports
    assert warm.content == markers[0]
    before = rss_kib(pid)
    with small_buffer_socket(server.port) as sock:
        sock.sendall(get(f"/starlette?path={path}"))
        head, first = read_head(sock)
        assert content_length(head) == size
        body, peak = read_body_slowly(sock, first, size, pid, slow_until=4 * MIB)
    for offset, marker in markers.items():
        assert body[offset : offset + len(marker)] == marker
    assert peak - before < 20 * 1024, f"server RSS grew by {peak - before} KiB while sending a 100 MiB file"
    assert httpx.get(f"{server.url}/hello").text == "hello"


@TWO_IMPLS
def test_client_leaving_mid_file_costs_no_traceback_and_no_descriptor(serve, impl, tmp_path):
    http, loop = impl
    path = tmp_path / "big.bin"
    make_file(path, 64 * MIB)
    server = serve("apps.files:app", "--http", http, "--loop", loop)
    pid = server.proc.pid
    for leave in ("reset", "close"):
        with small_buffer_socket(server.port) as sock:
            sock.sendall(get(f"/starlette?path={path}"))
            read_head(sock)
            sock.recv(MIB)
            if leave == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        deadline = time.monotonic() + 10
        while open_fds_to(pid, str(path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not open_fds_to(pid, str(path)), f"the file is still open after a client {leave}"
    assert httpx.get(f"{server.url}/hello").text == "hello"
    assert "Traceback" not in server.output and "ERROR" not in server.output, server.output


# -- TLS: read and written in pieces -------------------------------------------------------------
def _tls_file_to_slow_reader(serve, impl, tmp_path, tls_files, size: int) -> None:
    http, loop = impl
    key, cert, context = tls_files
    path = tmp_path / "big.bin"
    markers = make_file(path, size)
    server = serve("apps.files:app", "--http", http, "--loop", loop, "--ssl-keyfile", key, "--ssl-certfile", cert)
    pid = server.proc.pid
    with httpx.Client(verify=context) as client:
        offered = client.get(f"{server.url}/scope").json()
        assert offered == ["http.response.early_hint", "http.response.pathsend", "http.response.trailers", "http.response.zerocopysend", "tls"]
        assert client.get(f"{server.url}/zerocopy", params={"path": str(path), "offset": 0, "count": 4096}).content \
            == markers[0]
    before = rss_kib(pid)
    with context.wrap_socket(small_buffer_socket(server.port), server_hostname="127.0.0.1") as sock:
        sock.sendall(get(f"/starlette?path={path}"))
        head, first = read_head(sock)
        assert content_length(head) == size
        body, peak = read_body_slowly(sock, first, size, pid, slow_until=4 * MIB)
    for offset, marker in markers.items():
        assert body[offset : offset + len(marker)] == marker
    # ~2 MiB measured (the first TLS transfer's allocations); reading the file whole would add all of it.
    assert peak - before < 8 * 1024, f"server RSS grew by {peak - before} KiB while sending over TLS"


@TWO_IMPLS
def test_tls_file_to_a_slow_reader_keeps_memory_bounded(serve, impl, tmp_path, tls_files):
    _tls_file_to_slow_reader(serve, impl, tmp_path, tls_files, 12 * MIB)


@pytest.mark.slow
@TWO_IMPLS
def test_tls_100_mib_file_to_a_slow_reader(serve, impl, tmp_path, tls_files):
    _tls_file_to_slow_reader(serve, impl, tmp_path, tls_files, 100 * MIB)
