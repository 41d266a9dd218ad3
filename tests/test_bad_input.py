"""Malformed requests: the same clear 4xx on both parsers, the connection closed, the server unharmed."""

from __future__ import annotations

import pytest

from .helpers import http_get, raw_request, status_of

H = b"Host: x\r\n"
BAD_REQUESTS = {
    "bad request line": (b"GET /\r\n\r\n", 400),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
    "bad method token": (b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "unknown method": (b"FOO / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "bad version": (b"GET / HTTP/9.9\r\n" + H + b"\r\n", 400),
    "bad header syntax": (b"GET / HTTP/1.1\r\n" + H + b"No colon here\r\n\r\n", 400),
    "space before colon": (b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400),
    "NUL in header value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    "CR in header value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    "bare LF line ends": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    "invalid chunk size": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    "content-length with transfer-encoding": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "differing content-lengths": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    "repeated equal content-lengths": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    "negative content-length": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -3\r\n\r\nabc", 400),
    "non-numeric content-length": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3x\r\n\r\nabc", 400),
    "oversized content-length": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    "transfer-encoding not chunked": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc", 400),
    "chunked not final": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    "transfer-encoding gzip, chunked": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    "transfer-encoding in HTTP/1.0": (b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "transfer-encoding with trailing tab": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", 400),
    "two transfer-encoding lines": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "content-length over 64 bits": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 18446744073709551616\r\n\r\n", 400),
    "chunk size over 64 bits": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nx\r\n", 400),
    "bad chunk extension": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n0\r\n\r\n", 400),
    "content-length in trailers": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n", 400),
    "control character in header value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    "bare CR ending the head": (b"GET / HTTP/1.1\r\n" + H + b"\r\r\n", 400),
    "relative request target": (b"GET echo HTTP/1.1\r\n" + H + b"\r\n", 400),
    "missing host (HTTP/1.1)": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "duplicate host": (b"GET / HTTP/1.1\r\n" + H + b"Host: y\r\n\r\n", 400),
    "non-ASCII target": (b"GET /\xc3\xa4 HTTP/1.1\r\n" + H + b"\r\n", 400),
    "request line too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    "request line far too long": (b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    "header section too large": (b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(70)) + b"\r\n", 431),
    "one huge header": (b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 200_000 + b"\r\n\r\n", 431),
    "too many header fields": (b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
    "too many trailer fields": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n"
                                + b"".join(b"T-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_gets_clear_4xx_and_close(basic_server, name):
    request, expected = BAD_REQUESTS[name]
    response = raw_request(basic_server.port, request, timeout=5)
    assert status_of(response) == expected, f"{name}: {response[:200]!r}"
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert b"Traceback" not in response
    assert body  # a short human-readable reason
    assert http_get(basic_server.url + "/").status_code == 200  # everyone else is still served


def test_http2_preface_has_a_hint_when_http2_is_off(serve):
    server = serve("apps.basic:app", "--http2", "off")
    response = raw_request(server.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert status_of(response) == 400
    assert b"HTTP/2" in response.partition(b"\r\n\r\n")[2]


def test_refusal_is_logged(basic_server):
    raw_request(basic_server.port, b"GET / HTTP/1.1\r\n\r\n")
    basic_server.wait_for_line("Missing Host header (400)")


def test_limits_are_options(serve, impl):
    http, loop = impl
    server = serve("apps.basic:app", "--http", http, "--loop", loop, "--limit-request-line", "100",
                   "--limit-request-fields", "3", "--limit-request-headers-size", "200")
    ok = raw_request(server.port, b"GET /" + b"a" * 50 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(ok) == 404
    assert status_of(raw_request(server.port, b"GET /" + b"a" * 150 + b" HTTP/1.1\r\nHost: x\r\n\r\n")) == 414
    many = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
    assert status_of(raw_request(server.port, many)) == 431
    big = b"GET / HTTP/1.1\r\nHost: x\r\nA: " + b"v" * 300 + b"\r\n\r\n"
    assert status_of(raw_request(server.port, big)) == 431


def test_bad_request_after_good_pipelined_one(basic_server):
    response = raw_request(basic_server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 400 Bad Request" in response


def test_large_body_sharing_a_read_with_its_head_is_not_refused(basic_server):
    # One write holding the head and 1 MiB of body, then a head split over reads: both are fine.
    import socket
    body = b"b" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", basic_server.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while not data.endswith(body):
            data += sock.recv(1 << 20)
        assert status_of(data) == 200
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Long: " + b"h" * 2000)
        import time
        time.sleep(0.1)
        sock.sendall(b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        data = b""
        while not data.endswith(body):
            chunk = sock.recv(1 << 20)
            assert chunk, data[:200]
            data += chunk
        assert status_of(data) == 200
