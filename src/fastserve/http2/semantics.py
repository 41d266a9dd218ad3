"""HTTP/2 request rules (RFC 9113 8): a codec's RequestHeaders -> a RequestHead, or a StreamError.

Pure functions, like http1/semantics.py. The codec has already checked the syntax (pseudo-headers
once and first, lowercase names, no connection-specific fields); what is left here is meaning:
the method, the target form, content-length, the Host field first in the list (the ASGI spec
says :authority becomes a `host` header at the start), cookies joined into one field (RFC 9113
8.2.3), proxy headers from a trusted peer.
"""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import unquote

from ..asgi.request import UNKNOWN_LENGTH, RequestHead
from .codec import PROTOCOL_ERROR, RequestHeaders

Head = TypeVar("Head", bound=RequestHead)

_PROXY_HEADERS = frozenset((b"x-forwarded-for", b"x-forwarded-proto", b"forwarded"))
# Method names seen before -> str (no decode per request); bounded, as names come from clients.
_METHODS: dict[bytes, str] = {}
_METHODS_MAX = 64
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class StreamError(Exception):
    """A request not served: reset the stream with `error_code` (the connection carries on), or,
    when `status` is set, answer it with that status (a well-formed request the server cannot do)."""

    def __init__(self, error_code: int, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.error_code = error_code
        self.reason = reason
        self.status = status


def request_head(
    event: RequestHeaders,
    client: tuple[str, int] | None,
    scheme: str,
    trusted_peer: bool,
    record: type[Head] = RequestHead,  # type: ignore[assignment]
) -> Head:
    """The request head of one stream, or StreamError (RST_STREAM PROTOCOL_ERROR)."""
    if event.protocol is not None:
        # Here only with WebSockets off (else the connection serves it: websocket_stream.py). zttp
        # advertises SETTINGS_ENABLE_CONNECT_PROTOCOL all the same: a clear answer, not a reset.
        raise StreamError(PROTOCOL_ERROR, "WebSockets are off on this server", 501)
    method = _METHODS.get(event.method)
    if method is None:  # (the lookup inlined: -0.4k instructions per request)
        method = _method(event.method)
    target = event.target
    if target[:1] == b"/":
        raw_path, _, query_string = target.partition(b"?")
    elif target == b"*" and method == "OPTIONS":
        raw_path, query_string = target, b""
    else:
        raise StreamError(PROTOCOL_ERROR, "invalid :path")
    if not raw_path.isascii():
        raise StreamError(PROTOCOL_ERROR, "invalid :path")
    headers, content_length, forwarded, expect_100 = _fields(event.headers, trusted_peer)
    if event.end_stream:
        if content_length:
            raise StreamError(PROTOCOL_ERROR, "content-length without a body")
        body_left = 0
    else:
        body_left = UNKNOWN_LENGTH if content_length is None else content_length
    path = raw_path.decode("ascii")
    if "%" in path:
        path = unquote(path)
    head = record()
    head.method = method
    head.raw_path = raw_path
    head.path = path
    head.query_string = query_string
    head.headers = headers
    head.http_version = "2"
    head.expect_100 = expect_100 and not event.end_stream
    head.is_head = method == "HEAD"
    head.body_left = body_left
    head.client = client
    head.scheme = scheme
    head.upgrade = False
    head.forwarded = forwarded
    return head


def _method(raw: bytes) -> str:
    method = _METHODS.get(raw)
    if method is not None:
        return method
    if not raw or not all(byte in _TCHAR for byte in raw):
        raise StreamError(PROTOCOL_ERROR, "invalid :method")
    if raw == b"CONNECT":  # the codecs refuse a plain CONNECT already; never a tunnel here
        raise StreamError(PROTOCOL_ERROR, "CONNECT is not served")
    method = raw.decode("ascii")
    if len(_METHODS) < _METHODS_MAX:
        _METHODS[raw] = method
    return method


def _fields(
    fields: list[tuple[bytes, bytes]], trusted_peer: bool
) -> tuple[list[tuple[bytes, bytes]], int | None, dict[bytes, bytes] | None, bool]:
    """(the header list as the scope has it, content-length or None, trusted proxy headers,
    expect: 100-continue)."""
    host: tuple[bytes, bytes] | None = None
    cookies: list[bytes] = []
    content_length: int | None = None
    forwarded: dict[bytes, bytes] | None = None
    headers: list[tuple[bytes, bytes]] = []
    expect_100 = False
    for name, value in fields:
        if name == b"host":
            if host is not None and value != host[1]:
                raise StreamError(PROTOCOL_ERROR, "conflicting host fields")
            host = (name, value)
            continue
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"content-length":
            if not value.isdigit() or (content_length is not None and int(value) != content_length):
                raise StreamError(PROTOCOL_ERROR, "invalid content-length")
            content_length = int(value)
        elif name == b"expect":
            expect_100 = value.lower() == b"100-continue"
        elif trusted_peer and name in _PROXY_HEADERS:
            if forwarded is None:
                forwarded = {}
            forwarded[name] = value
        headers.append((name, value))
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    if host is not None:
        headers.insert(0, host)
    return headers, content_length, forwarded, expect_100
