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

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
# App header names seen before, mapped to their lower-case form. Names come from app code, so
# there are few distinct ones; the cap keeps a misbehaving app from growing it without bound.
_NAME_CACHE: dict[bytes, bytes] = {}
_NAME_CACHE_MAX = 4096


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise InvalidResponse(f"invalid status code {status!r}")
        line = b"HTTP/1.1 %d \r\n" % status
    return line



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
    """Header values may not carry CR, LF or NUL: each line ends in exactly one CRLF."""
    if block.count(b"\n") != count or block.count(b"\r") != count or b"\0" in block:
        raise InvalidResponse("response header value contains CR, LF or NUL")


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
