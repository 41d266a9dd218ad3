"""Hostile and careless clients: request bodies left unread, refusals the client must receive (a
lingering close, not a reset), junk after a refusal neither parsed nor logged, bounded in time and size."""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time

import httpx
import pytest

from .helpers import ServerProcess, status_of
from .test_transports import tls_files  # noqa: F401 (a fixture)

H = b"Host: x\r\n"
APP = "apps.careless:app"


def read_response(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """One response with a content-length, read exactly (the connection may stay open)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed inside a response body: {data!r}"
        body += chunk
    assert len(body) == length, "more bytes than the response"
    return head + b"\r\n\r\n" + body


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """Wait for the server's FIN (the end of the stream); fail on data or a reset."""
    sock.settimeout(limit)
    started = time.monotonic()
    assert sock.recv(65536) == b"", "data instead of the end of the connection"
    return time.monotonic() - started


def refusal_lines(server: ServerProcess, sock: socket.socket) -> list[str]:
    client = f"127.0.0.1:{sock.getsockname()[1]}"
    return [line for line in server.lines if "Refused a request" in line and client in line]


class Exchange:
    """A client that sends while it reads, as browsers and curl do: a thread sends ``data`` (then
    ``more`` times ``junk``) while the caller reads. Records how sending and reading ended."""

    def __init__(self, port: int, data: bytes, junk: bytes = b"", more: int = 0, pause: float = 0.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.send_error: BaseException | None = None
        self.sent = 0
        self._parts = (data, junk, more, pause)
        self._sender = threading.Thread(target=self._send, daemon=True)
        self._sender.start()

    def _send(self) -> None:
        data, junk, more, pause = self._parts
        try:
            self.sock.sendall(data)
            self.sent += len(data)
            for _ in range(more):
                self.sock.sendall(junk)
                self.sent += len(junk)
                if pause:
                    time.sleep(pause)
        except OSError as exc:
            self.send_error = exc

    def read_all(self, timeout: float = 10.0) -> tuple[bytes, BaseException | None]:
        """Everything until the server's FIN, and the error that ended reading instead, if any."""
        self.sock.settimeout(timeout)
        chunks = []
        try:
            while chunk := self.sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            return b"".join(chunks), exc
        return b"".join(chunks), None

    def close(self) -> None:
        self.sock.close()
        self._sender.join(10)


@pytest.fixture(scope="module")
def careless_server(module_impl):
    http, loop = module_impl
    server = ServerProcess(APP, "--http", http, "--loop", loop, "--timeout-keep-alive", "1")
    server.start()
    yield server
    server.stop()


# -- request body the app never reads -----------------------------------------------------------------

@pytest.mark.parametrize("declared", [1000, 10_000_000], ids=["small", "over-the-drain-limit"])
def test_partial_body_to_an_app_that_ignores_it_is_closed(careless_server, declared):
    # Part of the declared body, then silence: once answered, the connection is closed within the
    # drain timeout (--timeout-keep-alive, 1 s here), not held forever.
    with socket.create_connection(("127.0.0.1", careless_server.port), timeout=10) as sock:
        sock.sendall(b"POST /ignore-body HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % declared + b"x" * 10)
        response = read_response(sock)
        assert status_of(response) == 401 and response.endswith(b"denied")
        # More than --limit-drain-body still to come: the head says the connection closes.
        assert (b"connection: close" in response.lower()) == (declared > 65536)
        assert seconds_until_closed(sock, limit=10) < 5


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_small_unread_body_is_drained_and_the_connection_serves_the_next_request(careless_server, framing):
    body = b"y" * 5000
    if framing == "content-length":
        head = b"POST /ignore-body HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body)
        first, rest = body[:100], body[100:]
    else:
        head = b"POST /ignore-body HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        first, rest = b"64\r\n" + body[:100] + b"\r\n", b"%x\r\n" % (len(body) - 100) + body[100:] + b"\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", careless_server.port), timeout=10) as sock:
        sock.sendall(head + first)
        response = read_response(sock)
        assert status_of(response) == 401 and b"connection: close" not in response.lower()
        time.sleep(0.1)  # the rest of the body comes after the response
        sock.sendall(rest + b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(sock).endswith(b"\r\n\r\nok")


@pytest.mark.parametrize("framing", [b"Content-Length: 1000", b"Transfer-Encoding: chunked"])
def test_unread_body_after_expect_100_closes(careless_server, framing):
    # No 100 Continue was sent: the client may send its body or not, so the connection cannot go on.
    with socket.create_connection(("127.0.0.1", careless_server.port), timeout=10) as sock:
        sock.sendall(b"POST /ignore-body HTTP/1.1\r\n" + H + framing + b"\r\nExpect: 100-continue\r\n\r\n")
        response = read_response(sock)
        assert status_of(response) == 401 and b"connection: close" in response.lower()
        assert seconds_until_closed(sock, limit=10) < 5


def test_unread_chunked_body_over_the_drain_limit_closes(serve, impl):
    http, loop = impl
    server = serve(APP, "--http", http, "--loop", loop, "--limit-drain-body", "1000")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /ignore-body HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n10\r\n" + b"z" * 16 + b"\r\n")
        assert status_of(read_response(sock)) == 401
        time.sleep(0.1)
        sock.sendall(b"1388\r\n" + b"z" * 5000 + b"\r\n0\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n")
        assert seconds_until_closed(sock, limit=10) < 5  # closed, the next request never answered


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_many_connections_with_partial_bodies_are_all_closed(serve, http):
    # The attack: connections that send part of a body the app never reads, then nothing. They
    # used to be held forever (1,010 of them locked everyone out); now the drain timeout ends them.
    server = serve(APP, "--http", http, "--timeout-keep-alive", "1")

    def fds() -> int:
        return len(os.listdir(f"/proc/{server.proc.pid}/fd"))

    idle_fds = fds()
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(200)]
    try:
        for sock in socks:
            sock.sendall(b"POST /ignore-body HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\n\r\n" + b"x" * 10)
        for sock in socks:
            assert status_of(read_response(sock)) == 401
        started = time.monotonic()
        assert httpx.get(server.url + "/", timeout=5).text == "ok"  # everyone else is served meanwhile
        for sock in socks:
            seconds_until_closed(sock, limit=10)
        assert time.monotonic() - started < 8
        deadline = time.monotonic() + 5
        while fds() > idle_fds + 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fds() <= idle_fds + 5  # the server's sockets are closed, not only shut down
    finally:
        for sock in socks:
            sock.close()


# -- refusals the client receives -----------------------------------------------------------------------

def test_huge_header_gets_its_431_received_in_full(careless_server):
    # The client is still sending its 200 KB head when the 431 comes: a plain close would leave
    # input unread and the kernel would reset the connection; a lingering close reads it.
    exchange = Exchange(careless_server.port, b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 200_000 + b"\r\n\r\n")
    try:
        response, error = exchange.read_all()
    finally:
        exchange.close()
    assert error is None, f"{error!r} after {response[:100]!r}"  # the end of the stream, not a reset
    assert status_of(response) == 431 and response.endswith(b"Request header section too large")
    assert exchange.send_error is None


def test_huge_header_sent_before_reading_gets_its_431(careless_server):
    # A client that reads only once it has sent everything (4 MB: more than socket buffers hold).
    with socket.create_connection(("127.0.0.1", careless_server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 4_000_000 + b"\r\n\r\n")
        response = read_response(sock)
    assert status_of(response) == 431


def test_junk_after_a_refusal_is_neither_parsed_nor_logged(careless_server):
    bad = b"GET / HTTP/1.1\r\n\r\n"  # no Host: 400
    junk = b"BAD\x00 / HTTP/1.1\r\n" + H + b"\r\n" + b"GET / HTTP/1.1\r\n" + H + b"\r\n" * 20
    exchange = Exchange(careless_server.port, bad, junk, more=8_000_000 // len(junk))
    try:
        response, error = exchange.read_all()
        assert error is None and exchange.send_error is None
        assert status_of(response) == 400 and response.count(b"HTTP/1.1") == 1  # nothing else answered
        time.sleep(0.3)
        assert len(refusal_lines(careless_server, exchange.sock)) == 1
    finally:
        exchange.close()
    assert httpx.get(careless_server.url + "/").text == "ok"


def test_malformed_request_while_a_response_is_in_flight_is_refused_once(careless_server):
    # httptools refused it again on every read while the response was still on its way.
    request = b"GET /slow?s=0.5 HTTP/1.1\r\n" + H + b"\r\n" + b"NOT HTTP AT ALL\r\n\r\n"
    junk = b"junk " * 4000
    exchange = Exchange(careless_server.port, request, junk, more=8_000_000 // len(junk))
    try:
        response, error = exchange.read_all()
        assert error is None, error
        first, _, second = response.partition(b"\r\n\r\nslow")
        assert status_of(first) == 200 and status_of(second) == 400
        time.sleep(0.3)
        assert len(refusal_lines(careless_server, exchange.sock)) == 1
    finally:
        exchange.close()


# -- the lingering close is bounded -------------------------------------------------------------------------

def test_lingering_close_ends_after_timeout_linger(serve, impl):
    http, loop = impl
    server = serve(APP, "--http", http, "--loop", loop, "--timeout-linger", "1")
    started = time.monotonic()
    # A client that keeps sending (never silent for a second, never much) and never closes.
    exchange = Exchange(server.port, b"GET / HTTP/1.1\r\n\r\n", b"x" * 100, more=100, pause=0.05)
    try:
        response, error = exchange.read_all()  # the FIN at once, after the 400
        assert status_of(response) == 400 and error is None
        exchange._sender.join(10)
    finally:
        exchange.close()
    assert isinstance(exchange.send_error, OSError)  # the server closed while it was still sending
    assert time.monotonic() - started < 4.5


def test_lingering_close_ends_after_a_flood(serve, impl):
    http, loop = impl
    server = serve(APP, "--http", http, "--loop", loop, "--timeout-linger", "60")
    started = time.monotonic()
    exchange = Exchange(server.port, b"GET / HTTP/1.1\r\n\r\n", b"x" * 65536, more=100_000)  # 6.5 GB at most
    try:
        response, _ = exchange.read_all()
        exchange._sender.join(30)
    finally:
        exchange.close()
    assert status_of(response) == 400
    assert isinstance(exchange.send_error, OSError)  # cut off well before 6.5 GB or 60 s
    assert exchange.sent < 200_000_000 and time.monotonic() - started < 20


def test_lingering_close_ends_when_the_client_is_silent(careless_server):
    with socket.create_connection(("127.0.0.1", careless_server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        response = read_response(sock)
        assert status_of(response) == 400
        assert sock.recv(10) == b""  # the FIN comes at once (write side shut down) ...
        time.sleep(2.5)  # ... and the socket closes after a second without input
        with pytest.raises(OSError):
            for _ in range(20):
                sock.sendall(b"x")
                time.sleep(0.05)


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_refusal_over_tls_is_received(serve, http, tls_files):  # noqa: F811 (the fixture)
    # TLS has no half-close (no write_eof): the server reads on until the client, which has its
    # answer (with a content-length and "connection: close"), closes. (The TLS shutdown of asyncio
    # and uvloop reads on while it waits for the client's close_notify, so this passed before the
    # lingering close too: it checks the lingering path keeps that working.)
    key, cert, ca = tls_files
    server = serve(APP, "--http", http, "--ssl-keyfile", key, "--ssl-certfile", cert)
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 2_000_000 + b"\r\n\r\n")
            response = read_response(sock)
    assert status_of(response) == 431
    assert httpx.get(server.url + "/", verify=context).text == "ok"
