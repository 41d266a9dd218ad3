"""Request-smuggling shapes, sent over raw sockets to a real server on every parser and loop.

Each shape has one expected outcome for both parsers: the statuses of the responses, in order.
A refused shape gets one 400 and a closed connection; a second request hidden in a shape is
never answered; the server keeps serving everyone else.
"""

from __future__ import annotations

import socket
import time

import pytest

from .helpers import http_get, read_until_closed

H = b"Host: x\r\n"
CLOSE = b"Connection: close\r\n"
POST = b"POST /echo HTTP/1.1\r\n" + H + CLOSE
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
HIDDEN = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"  # a route that does not exist: 404 if served

OK, BAD = [200], [400]
SHAPES = {
    # -- Content-Length and Transfer-Encoding together (CL.TE, TE.CL) ---------------------------
    "CL.TE": (POST + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", BAD),
    "TE.CL": (POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", BAD),
    "CL.TE with CL 0": (POST + b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BAD),
    "CL.TE hidden request": (POST + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5c\r\n" + HIDDEN + b"0\r\n\r\n", BAD),
    # -- Transfer-Encoding obfuscations (TE.TE) --------------------------------------------------
    "TE xchunked": (POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", BAD),
    "TE chunkedx": (POST + b"Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n", BAD),
    "TE extra space before value": (POST + b"Transfer-Encoding:  chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", OK),
    "TE tab before value": (POST + b"Transfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", OK),
    "TE trailing tab": (POST + b"Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", BAD),
    "TE trailing space": (POST + b"Transfer-Encoding: chunked \r\n\r\n0\r\n\r\n", BAD),
    "TE space before colon": (POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", BAD),
    "TE tab before colon": (POST + b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", BAD),
    "TE line starting with a space": (POST + b" Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BAD),
    "TE folded value": (POST + b"Transfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n", BAD),
    "TE duplicated lines": (POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BAD),
    "TE chunked then identity line": (POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", BAD),
    "TE unknown then chunked line": (POST + b"Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BAD),
    "TE chunked, chunked": (POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", BAD),
    "TE gzip, chunked": (POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", BAD),
    "TE identity, chunked": (POST + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", BAD),
    "TE chunked with a parameter": (POST + b"Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", BAD),
    "TE upper case": (POST + b"Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n", BAD),
    "TE empty": (POST + b"Transfer-Encoding: \r\n\r\n", BAD),
    "TE in HTTP/1.0": (b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", BAD),
    "TE with NUL": (POST + b"Transfer-Encoding: chunked\x00\r\n\r\n0\r\n\r\n", BAD),
    "TE with vertical tab": (POST + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", BAD),
    # -- chunk sizes and extensions --------------------------------------------------------------
    "chunk extension": (CHUNKED + b"5;foo=bar\r\nhello\r\n0\r\n\r\n", OK),
    "chunk extension quoted": (CHUNKED + b'5;foo="b r;\\"x"\r\nhello\r\n0\r\n\r\n', OK),
    "chunk extension without value": (CHUNKED + b"5;foo;bar=1\r\nhello\r\n0;baz\r\n\r\n", OK),
    "chunk extension after whitespace": (CHUNKED + b"5 ;foo=bar\r\nhello\r\n0\r\n\r\n", BAD),
    "chunk extension with whitespace inside": (CHUNKED + b"5;foo= bar\r\nhello\r\n0\r\n\r\n", BAD),
    "chunk extension with control char": (CHUNKED + b"5;f\x01o\r\nhello\r\n0\r\n\r\n", BAD),
    "chunk extension ending in ;": (CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", BAD),
    "chunk size with trailing space": (CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", BAD),
    "chunk size with leading zeros": (CHUNKED + b"0005\r\nhello\r\n0000\r\n\r\n", OK),
    "chunk size 0x prefix": (CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", BAD),
    "chunk size negative": (CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", BAD),
    "chunk size overflowing 64 bits": (CHUNKED + b"10000000000000000\r\nhello\r\n0\r\n\r\n", BAD),
    "chunk size far too long": (CHUNKED + b"F" * 40 + b"\r\nhello\r\n0\r\n\r\n", BAD),
    "chunk size bare LF": (CHUNKED + b"5\nhello\r\n0\r\n\r\n", BAD),
    "chunk size bare CR": (CHUNKED + b"5\rhello\r\n0\r\n\r\n", BAD),
    "chunk data longer than its size": (CHUNKED + b"3\r\nhello\r\n0\r\n\r\n", BAD),
    "chunk data without CRLF": (CHUNKED + b"5\r\nhello0\r\n\r\n", BAD),
    "last chunk bare LF": (CHUNKED + b"5\r\nhello\r\n0\n\n", BAD),
    "trailer section": (CHUNKED + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", OK),
    "trailer with Content-Length": (CHUNKED + b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n", BAD),
    "trailer with Transfer-Encoding": (CHUNKED + b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", BAD),
    "trailer with Connection": (CHUNKED + b"5\r\nhello\r\n0\r\nConnection: keep-alive\r\n\r\n", BAD),
    "trailer with Host": (CHUNKED + b"5\r\nhello\r\n0\r\nHost: y\r\n\r\n", OK),
    "trailer bare LF": (CHUNKED + b"5\r\nhello\r\n0\r\nX-Trailer: 1\n\r\n", BAD),
    "trailer folded": (CHUNKED + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n 2\r\n\r\n", BAD),
    "missing final CRLF, request next": (CHUNKED + b"5\r\nhello\r\n0\r\n" + HIDDEN, BAD),
    # -- bare CR and control characters ----------------------------------------------------------
    "bare CR in request line": (b"GET /\r HTTP/1.1\r\n" + H + b"\r\n", BAD),
    "bare CR ending request line": (b"GET / HTTP/1.1\r" + H + b"\r\n", BAD),
    "bare CR ending a header": (b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", BAD),
    "bare CR in a header value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", BAD),
    "bare CR ending the head": (b"GET / HTTP/1.1\r\n" + H + b"\r\r\n", BAD),
    "control char in a header value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", BAD),
    "DEL in a header value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", BAD),
    # -- header names, Host ----------------------------------------------------------------------
    "space before colon": (b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", BAD),
    "space before colon in Host": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", BAD),
    "space before colon in Content-Length": (POST + b"Content-Length : 5\r\n\r\nhello", BAD),
    "duplicate Host": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", BAD),
    "duplicate equal Host": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", BAD),
    "Host and folded Host": (b"GET / HTTP/1.1\r\nHost: a\r\n Host: b\r\n\r\n", BAD),
    # -- request line ----------------------------------------------------------------------------
    # llhttp splits the request line on runs of spaces, as RFC 9112 section 3 allows; h11 is
    # brought to do the same (rejecting it would cost a scan of every request on llhttp).
    "double space after method": (b"GET  / HTTP/1.1\r\n" + H + CLOSE + b"\r\n", OK),
    "double space before version": (b"GET /  HTTP/1.1\r\n" + H + CLOSE + b"\r\n", OK),
    "tab in request line": (b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", BAD),
    "trailing space in request line": (b"GET / HTTP/1.1 \r\n" + H + b"\r\n", BAD),
    "leading space in request line": (b" GET / HTTP/1.1\r\n" + H + b"\r\n", BAD),
    "empty lines before the request": (b"\r\n\r\nGET / HTTP/1.1\r\n" + H + CLOSE + b"\r\n", OK),
    "absolute-form target": (b"GET http://example.com/ HTTP/1.1\r\n" + H + CLOSE + b"\r\n", OK),
    "absolute-form target without path": (b"GET http://example.com HTTP/1.1\r\n" + H + CLOSE + b"\r\n", OK),
    "absolute-form target hiding a path": (b"GET http://example.com/smuggled HTTP/1.1\r\n" + H + CLOSE + b"\r\n", [404]),
    "relative target": (b"GET echo HTTP/1.1\r\n" + H + b"\r\n", BAD),
    "authority-form target on GET": (b"GET example.com:80 HTTP/1.1\r\n" + H + b"\r\n", BAD),
    "scheme without slashes": (b"GET http:/x HTTP/1.1\r\n" + H + b"\r\n", BAD),
    "lower-case version": (b"GET / http/1.1\r\n" + H + b"\r\n", BAD),
    "upgrade with a Connection value that only contains upgrade": (
        b"GET / HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\nConnection: Upgrade:, close\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", OK),
    # -- Content-Length values -------------------------------------------------------------------
    "CL +5": (POST + b"Content-Length: +5\r\n\r\nhello", BAD),
    "CL 0x5": (POST + b"Content-Length: 0x5\r\n\r\nhello", BAD),
    "CL -5": (POST + b"Content-Length: -5\r\n\r\nhello", BAD),
    "CL 5.0": (POST + b"Content-Length: 5.0\r\n\r\nhello", BAD),
    "CL 5 5": (POST + b"Content-Length: 5 5\r\n\r\nhello", BAD),
    "CL 5, 5": (POST + b"Content-Length: 5, 5\r\n\r\nhello", BAD),
    "CL empty": (POST + b"Content-Length: \r\n\r\nhello", BAD),
    "CL leading zeros": (POST + b"Content-Length: 005\r\n\r\nhello", OK),
    "CL trailing whitespace": (POST + b"Content-Length: 5 \t\r\n\r\nhello", OK),
    "CL overflowing 64 bits": (POST + b"Content-Length: 18446744073709551616\r\n\r\nhello", BAD),
    "CL Arabic-Indic digit": (POST + "Content-Length: \u0665\r\n\r\nhello".encode(), BAD),
    # -- a second request hidden in a body or after the end ------------------------------------
    "request hidden in a body": (POST + b"Content-Length: %d\r\n\r\n" % len(HIDDEN) + HIDDEN, OK),
    "request hidden in a chunked body": (CHUNKED + b"%x\r\n" % len(HIDDEN) + HIDDEN + b"\r\n0\r\n\r\n", OK),
    "request hidden in a GET body": (b"GET / HTTP/1.1\r\n" + H + CLOSE + b"Content-Length: %d\r\n\r\n" % len(HIDDEN) + HIDDEN, OK),
    "request after Connection: close": (b"GET / HTTP/1.1\r\n" + H + CLOSE + b"\r\n" + HIDDEN, OK),
    "request after an HTTP/1.0 request": (b"GET / HTTP/1.0\r\n\r\n" + HIDDEN, OK),
    "request after Connection: closed": (b"GET / HTTP/1.1\r\n" + H + b"Connection: closed\r\n\r\n" + HIDDEN, OK),
    "request after Connection: close, keep-alive": (b"GET / HTTP/1.1\r\n" + H + b"Connection: keep-alive, close\r\n\r\n" + HIDDEN, OK),
    "request after a slow Connection: close": (b"GET /sleep?t=0.2 HTTP/1.1\r\n" + H + CLOSE + b"\r\n" + HIDDEN, OK),
    # llhttp's own keep-alive rules differ from the server's; the server's decide, on both parsers.
    "request after Proxy-Connection: close": (b"GET / HTTP/1.1\r\n" + H + b"Proxy-Connection: close\r\n\r\n" + HIDDEN + b"GET / HTTP/1.1\r\n" + H + CLOSE + b"\r\n", [200, 404, 200]),
    "request after Connection: close then keep-alive lines": (
        b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\nConnection: keep-alive\r\n\r\n" + HIDDEN + b"GET / HTTP/1.1\r\n" + H + CLOSE + b"\r\n", [200, 404, 200]),
    "request after a chunked body with a trailer": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n" + H + CLOSE + b"\r\n", [200, 200]),
    "request after a body with an extra CRLF": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello\r\n" + HIDDEN + b"GET / HTTP/1.1\r\n" + H + CLOSE + b"\r\n", [200, 404, 200]),
}


def parse_responses(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split a byte stream into (status, head, body) responses (Content-Length or chunked)."""
    responses = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"HTTP/1.1 "), f"not a response: {data[:200]!r}"
        status = int(head.split(b" ", 2)[1])
        fields = {line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[1].strip()
                  for line in head.split(b"\r\n")[1:]}
        if b"content-length" in fields:
            size = int(fields[b"content-length"])
            body, data = rest[:size], rest[size:]
        elif fields.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body, rest = body + rest[:size], rest[size + 2:]
                if size == 0:
                    break
            data = rest
        else:
            body, data = rest, b""
        responses.append((status, head, body))
    return responses


@pytest.mark.parametrize("name", list(SHAPES))
def test_smuggling_shape(basic_server, name):
    request, expected = SHAPES[name]
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", basic_server.port), timeout=5) as sock:
        sock.sendall(request)
        data = read_until_closed(sock, timeout=5)
    closed_in = time.monotonic() - started
    responses = parse_responses(data)
    assert [status for status, _, _ in responses] == expected, f"{name}: {data[:600]!r}"
    assert closed_in < 4, f"{name}: the server did not close the connection"
    assert all(b"Traceback" not in body for _, _, body in responses), data
    if expected == BAD:
        assert b"connection: close" in responses[0][1].lower()
    if name.startswith("request hidden"):
        assert responses[0][2].endswith(HIDDEN) or name.endswith("GET body"), responses[0][2]
    assert http_get(basic_server.url + "/", timeout=5).status_code == 200  # still serving


def test_server_log_has_no_traceback(basic_server):
    # Runs after the shapes in this module (same server): none of them hurt the server. The only
    # tracebacks allowed are /echo's own, when its body was cut short by a refusal.
    output = basic_server.output
    assert "Fatal error" not in output and "Exception in callback" not in output, output[-4000:]
    assert output.count("Traceback") == output.count("ConnectionError: disconnected"), output[-4000:]
