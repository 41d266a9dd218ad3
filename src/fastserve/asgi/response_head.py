"""Response-head validation, in no wire format: an app's status and headers checked once, with
what the server acts on read out of them (content-length, transfer-encoding, connection, server,
date). Rendering the validated headers into bytes is each wire format's business (HTTP/1.1:
http1/render.py); ``ResponseHeadCache`` keeps both, bounded, per wire format.

Pure functions and constants: nothing here touches a transport.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import InvalidResponse

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
# Header values may not carry CR, LF or NUL (RFC 9110 5.5): no wire format can carry them.
_FORBIDDEN_IN_VALUE = re.compile(rb"[\r\n\x00]").search
# App header names seen before, mapped to their lower-case form. Names come from app code, so
# there are few distinct ones; the cap keeps a misbehaving app from growing it without bound.
_NAME_CACHE: dict[bytes, bytes] = {}
_NAME_CACHE_MAX = 4096
# The headers the server itself acts on; any other response header is passed through unread.
_SPECIAL_RESPONSE_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"connection", b"server", b"date"))


def check_status(status: Any) -> int:
    if not isinstance(status, int) or not 100 <= status <= 999:
        raise InvalidResponse(f"invalid status code {status!r:.100}")
    return status


def lower_name(name: Any) -> bytes:
    """The lower-cased header name, after checking it is an HTTP token. (``name``: the app's, so
    Any: compiled, a str would fail the annotation's check before the one here that says why.)"""
    lowered = _NAME_CACHE.get(name)
    if lowered is not None:
        return lowered
    if not isinstance(name, bytes) or not _TOKEN(name):
        raise InvalidResponse(f"invalid response header name {name!r}")
    lowered = name.lower()
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[name] = lowered
    return lowered


def check_value(value: Any) -> None:
    try:
        forbidden = _FORBIDDEN_IN_VALUE(value)
    except TypeError:
        raise InvalidResponse("response header names and values must be bytes") from None
    if forbidden is not None:
        raise InvalidResponse("response header value contains CR, LF or NUL")


# A response header or trailer field that passed the checks: the name bytes, the value the app's
# bytes-like (bytes, as ASGI says, or a bytearray or memoryview: sent as well). Not tuple[bytes,
# bytes]: the compiled build would refuse the others where the pure one sends them.
Field = tuple[bytes, Any]


def validate_headers(headers: Any) -> tuple[list[Field], int | None, bool, bool, bool]:
    """An app's response headers as (the pairs to send, content-length or None, chunked, the app
    asked to close, the app sets server or date itself); raises InvalidResponse for invalid ones.
    The pairs keep the app's spelling and order, less transfer-encoding (framing is the wire
    format's)."""
    items: list[Field] = []
    content_length = None
    chunked = closes = sets_defaults = False
    for name, value in headers:
        lowered = lower_name(name)
        check_value(value)
        if lowered in _SPECIAL_RESPONSE_HEADERS:
            if lowered == b"content-length":
                content_length = _content_length(value)
            elif lowered == b"transfer-encoding":
                chunked = value.lower() == b"chunked"
                continue  # the server writes its own framing
            elif lowered == b"connection":
                closes = closes or value.lower().find(b"close") >= 0
            else:
                sets_defaults = True
        items.append((name, value))
    return items, content_length, chunked, closes, sets_defaults


def _content_length(value: Any) -> int:
    """(``value``: the app's, a bytes-like once check_value took it; typed Any, see lower_name)"""
    digits = value if type(value) is bytes else bytes(value)  # (a memoryview has no isdigit())
    if not digits.isdigit():
        raise InvalidResponse(f"invalid content-length header {digits!r}")
    return int(digits)


# Fields a trailer section may not carry (RFC 9110 6.5.1): they frame, route, authenticate or
# describe the message, and a recipient needs them before the content. Refused as an app error.
_NOT_IN_TRAILERS = frozenset(
    (
        b"content-length", b"transfer-encoding", b"content-encoding", b"content-type", b"content-range",
        b"trailer", b"host", b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade",
        b"authorization", b"proxy-authorization", b"www-authenticate", b"proxy-authenticate",
        b"set-cookie", b"cookie", b"cache-control", b"expires", b"age", b"date", b"location",
        b"retry-after", b"vary", b"pragma", b"max-forwards",
    )
)


def validate_trailers(headers: Any) -> list[Field]:
    """An app's trailer fields ('http.response.trailers' headers) as pairs to send: names and values
    checked as response headers are, and none of the fields a trailer may not carry."""
    items: list[Field] = []
    try:
        for name, value in headers:
            if lower_name(name) in _NOT_IN_TRAILERS:
                raise InvalidResponse(f"{name!r} may not be sent as a trailer field")
            check_value(value)
            items.append((name, value))
    except (TypeError, ValueError):  # not an iterable of pairs
        raise InvalidResponse("'http.response.trailers' headers must be pairs of bytes") from None
    return items


def validate_links(links: Any) -> list[bytes]:
    """The Link field values of an 'http.response.early_hint' message (an iterable of bytes)."""
    if isinstance(links, (bytes, bytearray, str)):
        raise InvalidResponse("'http.response.early_hint' links must be an iterable of byte strings")
    try:
        values = list(links)
    except TypeError:
        raise InvalidResponse("'http.response.early_hint' links must be an iterable of byte strings") from None
    for value in values:
        if not isinstance(value, bytes):
            raise InvalidResponse("'http.response.early_hint' links must be an iterable of byte strings")
        check_value(value)
    return values


def check_body(body: Any) -> None:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise not_bytes(body)


def not_bytes(body: Any) -> InvalidResponse:
    return InvalidResponse(f"'http.response.body' body must be bytes, not {type(body).__name__}")


class ResponseHeadCache:
    """Header lists seen before -> (the wire format's head, content-length, sets defaults). Apps
    mostly send the same few header lists, so most responses cost one tuple and one lookup.
    Bounded (values may differ per response): at most ``size`` lists, each no longer than
    ``longest`` bytes of names and values. ``render(items, chunked, closes)``: the wire format's
    head from the validated pairs and what they ask of the framing (Transfer-Encoding: chunked,
    Connection: close), which only the wire format interprets (HTTP/2 drops both)."""

    __slots__ = ("render", "entries", "size", "longest")

    def __init__(self, render: Callable[[list[Field], bool, bool], Any], size: int = 512,
                 longest: int = 1024):
        self.render = render
        self.entries: dict[tuple, tuple] = {}
        self.size = size
        self.longest = longest

    def get(self, headers: tuple) -> tuple[Any, int | None, bool]:
        """The parsed form of ``headers`` (a tuple: the cache key); raises InvalidResponse."""
        try:
            parsed = self.entries.get(headers)
        except TypeError:  # pairs given as lists: fine, but not cacheable
            return self.parse(headers)[0]
        if parsed is None:
            parsed, size = self.parse(headers)
            if len(self.entries) < self.size and size <= self.longest:
                self.entries[headers] = parsed
        return parsed

    def parse(self, headers: Any) -> tuple[tuple[Any, int | None, bool], int]:
        """(the parsed form, the size of its names and values)."""
        items, content_length, chunked, closes, sets_defaults = validate_headers(headers)
        size = sum(len(name) + len(value) for name, value in items)
        return (self.render(items, chunked, closes), content_length, sets_defaults), size
