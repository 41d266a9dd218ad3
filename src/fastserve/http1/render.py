"""HTTP/1.1 rendering of response heads: status lines, header blocks, framing constants, the
simple plain-text responses. What is valid is decided in asgi/response_head.py; this only turns
it into HTTP/1.1 bytes, with the caches that make the common response cheap.

Pure functions and constants: nothing here touches a transport.
"""

from __future__ import annotations

import http
from typing import Any

from ..asgi.errors import InvalidResponse
from ..asgi.response_head import ResponseHeadCache, check_status

_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, phrase.encode("ascii")) for code, phrase in _REASONS.items()
}

CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
FINAL_CHUNK = b"0\r\n\r\n"
CONNECTION_CLOSE = b"connection: close\r\n"
CHUNKED = b"transfer-encoding: chunked\r\n"
# The last line of a head with a content-length, for small bodies: "%d" formatting costs
# ~0.15 µs per response, a list index ~0.02 µs (2,048 entries, ~120 KB).
CACHED_LENGTHS = 2048
CONTENT_LENGTH_ENDS = [b"content-length: %d\r\n\r\n" % size for size in range(CACHED_LENGTHS)]


def status_line(status: int) -> bytes:
    return _STATUS_LINES.get(check_status(status)) or b"HTTP/1.1 %d \r\n" % status


def render_headers(items: list[tuple[bytes, bytes]]) -> bytes:
    """Validated header pairs (asgi/response_head.validate_headers) as an HTTP/1.1 header block."""
    parts: list[bytes] = []
    for name, value in items:
        parts += (name, b": ", value, b"\r\n")
    return b"".join(parts)


def render_head(items: list[tuple[bytes, bytes]], chunked: bool, closes: bool) -> tuple[bytes, bool, bool]:
    """The HTTP/1.1 part of a response head, as the H1Writer reads it: (the header block, the app
    asked for chunked framing, the app's Connection field says close; the block carries it)."""
    return render_headers(items), chunked, closes


# The app's validated response headers, rendered: see ResponseHeadCache. Most responses cost one
# tuple and one lookup here.
HEADS = ResponseHeadCache(render_head)


def check_header_block(block: bytes, count: int) -> None:
    """Header values may not carry CR, LF or NUL: each of the ``count`` lines ends in exactly one
    CRLF. (bytes.find, not "in": "in" first tries its operand as an integer, at a cost.)"""
    if block.count(b"\n") != count or block.count(b"\r") != count or block.find(b"\0") >= 0:
        raise InvalidResponse("response header value contains CR, LF or NUL")


def header_block(parts: list[bytes]) -> bytes:
    """Header lines from [name, b": ", value, b"\r\n", ...], checked (see check_header_block)."""
    try:
        block = b"".join(parts)
    except TypeError:
        raise InvalidResponse("response header names and values must be bytes") from None
    check_header_block(block, len(parts) // 4)
    return block


def simple_response(status: int, body: str, extra_headers: bytes = b"") -> bytes:
    """A complete plain-text response that closes the connection (errors, 503s)."""
    payload = body.encode("utf-8")
    return b"".join(
        (
            status_line(status),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(payload),
            extra_headers,
            CONNECTION_CLOSE,
            b"\r\n",
            payload,
        )
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def informational(status: int, items: Any) -> bytes:
    """A 1xx response head (103 Early Hints) with validated header pairs."""
    return b"".join((status_line(status), render_headers(items), b"\r\n"))


def last_chunk_with_trailers(items: list[tuple[bytes, bytes]]) -> bytes:
    """The end of a chunked body carrying a trailer section (RFC 9112 7.1.2)."""
    return b"".join((b"0\r\n", render_headers(items), b"\r\n"))
