"""--limit-request-body: 413 before the app runs (declared), or when a chunked body crosses it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from .helpers import raw_request, read_until_closed, status_of

LIMIT = 10_000
CURL = shutil.which("curl")


@pytest.fixture
def server(serve, impl):
    http, loop = impl
    return serve("apps.ops:app", "--http", http, "--loop", loop, "--limit-request-body", str(LIMIT))


def curl_upload(server, data: bytes, *headers: str) -> tuple[int, str]:
    if CURL is None:
        pytest.skip("SKIPPED LOUDLY: curl is not installed (apt-get install curl)")
    args = [CURL, "-s", "-o", "-", "-w", "\n%{http_code}", "--data-binary", "@-", "-H", "Content-Type: application/octet-stream"]
    for header in headers:
        args += ["-H", header]
    result = subprocess.run([*args, server.url + "/upload"], input=data, capture_output=True, timeout=15)
    body, _, code = result.stdout.decode().rpartition("\n")
    return int(code), body


def test_under_the_limit_is_served(server):
    assert curl_upload(server, b"x" * LIMIT) == (200, str(LIMIT))
    assert curl_upload(server, b"x" * 5000, "Transfer-Encoding: chunked") == (200, "5000")


def test_declared_length_over_the_limit_is_413_before_the_app(server):
    code, body = curl_upload(server, b"x" * 200_000)
    assert (code, body) == (413, "Request body too large")
    seen = raw_request(server.port, b"GET /seen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"upload" not in seen.partition(b"\r\n\r\n")[2]  # the app never ran
    server.wait_for_line("Request body too large (413)")


def test_chunked_body_crossing_the_limit_is_413(server):
    code, body = curl_upload(server, b"y" * 200_000, "Transfer-Encoding: chunked")
    assert code == 413
    line = server.wait_for_line("Request body too large (413)")
    assert "Traceback" not in server.output, line
    # The app was reading: it heard http.disconnect, with no more than the limit handed over.
    seen = raw_request(server.port, b"GET /seen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    received = [int(x.rsplit(b" ", 2)[-2]) for x in seen.split(b"\n") if x.startswith(b"upload disconnected")]
    assert received and received[-1] <= LIMIT


def test_raw_declared_length_refused_and_server_keeps_serving(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10001\r\n\r\n")
        response = read_until_closed(sock, 5)
    assert status_of(response) == 413 and b"connection: close" in response
    assert status_of(raw_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == 200


def test_option_is_validated():
    result = subprocess.run([sys.executable, "-m", "fastserve", "apps.ops:app", "--limit-request-body", "0"], capture_output=True, text=True)
    assert result.returncode == 2 and "--limit-request-body: must be at least 1" in result.stderr
