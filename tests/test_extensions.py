"""ASGI extensions on HTTP/1.1 end to end (tests/apps/extensions.py): trailers seen by curl and a
raw socket, 103 Early Hints seen by curl, what the scope offers. Exact bytes on every parser and
loop combination are in test_inprocess_extensions.py."""

from __future__ import annotations

import shutil
import socket
import subprocess

import httpx
import pytest

from .apps.extensions import CHECKSUM, LINKS, PARTS
from .helpers import ServerProcess, read_until_closed

CURL = shutil.which("curl")
TRAILER_SECTION = b"0\r\nx-checksum: " + CHECKSUM + b"\r\nx-parts: 2\r\n\r\n"
CHUNKS = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in PARTS)

pytestmark = pytest.mark.two_impls


@pytest.fixture(scope="module")
def server(module_impl):
    http, loop = module_impl
    server = ServerProcess("apps.extensions:app", "--http", http, "--loop", loop)
    server.start()
    yield server
    server.stop()


def curl(server, path: str, *args: str) -> subprocess.CompletedProcess:
    if CURL is None:
        pytest.skip("SKIPPED LOUDLY: curl is not installed (apt-get install curl)")
    return subprocess.run([CURL, "-sv", *args, server.url + path], capture_output=True, timeout=10)


def exchange(server, request: bytes) -> bytes:
    """One request on a keep-alive connection, then a second one: the first response must have
    ended exactly where its framing says for the second to come back."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_until_closed(sock, timeout=10)


def test_curl_gets_the_trailer_section_with_te_trailers(server):
    done = curl(server, "/trailers", "--raw", "-H", "TE: trailers")
    assert done.returncode == 0, done.stderr
    assert done.stdout == CHUNKS + TRAILER_SECTION
    assert b"< transfer-encoding: chunked" in done.stderr


def test_curl_without_te_trailers_gets_the_body_and_no_trailers(server):
    done = curl(server, "/trailers", "--raw")
    assert done.returncode == 0, done.stderr
    assert done.stdout == CHUNKS + b"0\r\n\r\n"


def test_raw_socket_sees_the_exact_trailer_bytes_and_the_connection_goes_on(server):
    data = exchange(server, b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\ntransfer-encoding: chunked" in head
    assert rest.startswith(CHUNKS + TRAILER_SECTION + b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\nok")

    without = exchange(server, b"GET /trailers HTTP/1.1\r\nHost: x\r\n\r\n")
    assert without.partition(b"\r\n\r\n")[2].startswith(CHUNKS + b"0\r\n\r\nHTTP/1.1 200 OK\r\n")


def test_http10_client_gets_neither_trailers_nor_chunks(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /trailers HTTP/1.0\r\nTE: trailers\r\n\r\n")
        data = read_until_closed(sock, timeout=10)  # the close ends the body
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n" + b"".join(PARTS))


def test_an_invalid_trailer_field_cuts_the_response_with_one_log_line(server):
    first_line = len(server.lines)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /bad-trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        data = read_until_closed(sock, timeout=10)  # the server closes: the response cannot end
    assert data.endswith(b"7\r\npartial\r\n") and b"content-length: 0" not in data
    server.wait_for_line("may not be sent as a trailer field", start=first_line)
    assert not any("Traceback" in line for line in server.lines[first_line:])
    assert httpx.get(server.url + "/").text == "ok"  # everyone else is still served


def test_curl_sees_the_103_early_hints_before_the_final_response(server):
    done = curl(server, "/early-hints")
    assert done.returncode == 0 and done.stdout == b"final", done.stderr
    received = [line for line in done.stderr.splitlines() if line.startswith(b"< ")]
    assert received[0] == b"< HTTP/1.1 103 Early Hints"
    assert received[1:3] == [b"< link: " + link for link in LINKS]
    assert b"< HTTP/1.1 200 OK" in received


def test_http10_client_gets_no_early_hints(server):
    done = curl(server, "/early-hints", "--http1.0")
    assert done.returncode == 0 and done.stdout == b"final", done.stderr
    assert b"103" not in done.stderr


def test_scope_offers_trailers_and_early_hints(server):
    assert httpx.get(server.url + "/extensions").json() == ["http.response.early_hint", "http.response.pathsend", "http.response.trailers", "http.response.zerocopysend"]
