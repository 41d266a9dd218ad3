"""Turning ASGI response messages into HTTP/1.1 bytes: cached status lines, validated headers.

Pure functions and constants: nothing here touches a transport.
"""

from __future__ import annotations

import http
import re

from .errors import InvalidResponse

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

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
# App header names seen before, mapped to their lower-case form. Names come from app code, so
# there are few distinct ones; the cap keeps a misbehaving app from growing it without bound.
_NAME_CACHE: dict[bytes, bytes] = {}
_NAME_CACHE_MAX = 4096


def status_line(status: int) -> bytes:
    if not isinstance(status, int) or not 100 <= status <= 999:
        raise InvalidResponse(f"invalid status code {status!r:.100}")
    return _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status



def lower_name(name: bytes) -> bytes:
    """The lower-cased header name, after checking it is an HTTP token."""
    lowered = _NAME_CACHE.get(name)
    if lowered is not None:
        return lowered
    if not isinstance(name, bytes) or not _TOKEN(name):
        raise InvalidResponse(f"invalid response header name {name!r}")
    lowered = name.lower()
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[name] = lowered
    return lowered


def check_header_block(block: bytes, count: int) -> None:
    """Header values may not carry CR, LF or NUL: each of the ``count`` lines ends in exactly one
    CRLF. (bytes.find, not "in": "in" first tries its operand as an integer, at a cost.)"""
    if block.count(b"\n") != count or block.count(b"\r") != count or block.find(b"\0") >= 0:
        raise InvalidResponse("response header value contains CR, LF or NUL")


# The headers the server itself acts on; any other response header is passed through unread.
_SPECIAL_RESPONSE_HEADERS = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"server", b"date")
)
# Header lists seen before -> their parsed form: apps mostly send the same few header lists, so
# most responses cost one tuple and one lookup. Bounded, since values may differ per response.
_PARSED_HEADERS: dict[tuple, tuple] = {}
_PARSED_HEADERS_MAX = 512
_PARSED_BLOCK_SIZE = 1024


def parse_response_headers(headers: tuple) -> tuple[bytes, int | None, bool, bool, bool]:
    """An app's response headers as (header block, content-length or None, chunked, the app asked
    to close, the app sets server or date itself); raises InvalidResponse for invalid ones."""
    try:
        parsed = _PARSED_HEADERS.get(headers)
    except TypeError:  # pairs given as lists: fine, but not cacheable
        return _parse_response_headers(headers)
    if parsed is None:
        parsed = _parse_response_headers(headers)
        if len(_PARSED_HEADERS) < _PARSED_HEADERS_MAX and len(parsed[0]) <= _PARSED_BLOCK_SIZE:
            _PARSED_HEADERS[headers] = parsed
    return parsed


def _parse_response_headers(headers: tuple) -> tuple[bytes, int | None, bool, bool, bool]:
    parts: list[bytes] = []
    content_length = None
    chunked = closes = sets_defaults = False
    for name, value in headers:
        lowered = lower_name(name)
        if lowered in _SPECIAL_RESPONSE_HEADERS:
            if lowered == b"content-length":
                content_length = _content_length(value)
            elif lowered == b"transfer-encoding":
                chunked = value.lower() == b"chunked"
                continue  # the server writes its own framing header
            elif lowered == b"connection":
                closes = closes or value.lower().find(b"close") >= 0
            else:
                sets_defaults = True
        parts += (name, b": ", value, b"\r\n")
    return header_block(parts), content_length, chunked, closes, sets_defaults


def header_block(parts: list[bytes]) -> bytes:
    """Header lines from [name, b": ", value, b"\r\n", ...], checked (see check_header_block)."""
    try:
        block = b"".join(parts)
    except TypeError:
        raise InvalidResponse("response header names and values must be bytes") from None
    check_header_block(block, len(parts) // 4)
    return block


def _content_length(value: bytes) -> int:
    if not value.isdigit():
        raise InvalidResponse(f"invalid content-length header {value!r}")
    return int(value)


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
