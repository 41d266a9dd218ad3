"""Thin adapter: llhttp (via httptools) callbacks -> HTTPProtocol calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httptools

from .errors import (
    HTTP2_PREFACE_HINT,
    UNSUPPORTED_METHOD,
    BadRequest,
    StopReading,
    check_trailers,
    header_section_too_large,
    request_line_too_long,
    too_many_header_fields,
)

if TYPE_CHECKING:
    from .connection import HTTPProtocol

_ERROR_REASONS = {
    "Pause on PRI/Upgrade": (400, HTTP2_PREFACE_HINT),
    "Invalid method encountered": (400, UNSUPPORTED_METHOD),
}
_OWS = b" \t"  # optional whitespace around a field value


class HttptoolsParser:
    __slots__ = ("conn", "parser", "url", "headers", "header_bytes", "counting", "small_read", "in_head", "stalled", "limit_line", "limit_size", "limit_fields", "head_budget", "upgrade_body", "body_only")

    __deletable__ = ("conn",)  # (mypyc: close() deletes it)

    def __init__(self, conn: HTTPProtocol, config) -> None:
        # (typed: compiled, the calls to the connection are C calls: 48.7k -> 48.2k instructions a
        # keep-alive GET, callgrind)
        self.conn: HTTPProtocol = conn
        self.parser = _new_parser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0  # of the fields in headers, while counting
        self.counting = False  # (see feed)
        self.in_head = False
        self.stalled = 0  # bytes fed with no parsing progress while a head is incomplete
        self.limit_line = config.limit_request_line
        self.limit_size = config.limit_request_headers_size
        self.limit_fields = config.limit_request_fields
        # A read this small is not counted field by field (see feed): within the byte limit, and
        # holding at most 4 x --limit-request-fields fields (4 bytes at least each: "a:" CRLF),
        # so what a refused head costs before its 431 stays a few times an accepted one's.
        self.small_read = min(config.limit_request_headers_size, 16 * config.limit_request_fields)
        # httptools buffers a partial header line itself, with no limit: bound it.
        self.head_budget = config.limit_request_line + config.limit_request_headers_size + 4
        # llhttp never parses the body of an upgrade request. For one served as plain HTTP, its
        # framing header is kept here, then the body is parsed behind a synthetic request head.
        self.upgrade_body: bytes | None = None
        self.body_only = False

    def feed(self, data: bytes) -> None:
        # Fields are counted one by one (their number and bytes against the limits) only in a
        # read that is not small (see small_read) or goes on with fields (a head, a trailer
        # section) begun in an earlier read. The fields a small read completes are within the
        # byte limit, and their number is checked once the head (or trailer section) is
        # complete. A browser's request (16 fields, one read) then pays 27 bytecodes a field in
        # on_header rather than 59 (tracing opcodes): 140.5k -> 122.6k instructions per request
        # (callgrind, with request_head's cheaper lookup of the fields it ignores).
        self.counting = self.in_head or len(data) > self.small_read or bool(self.headers)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._after_upgrade(data[upgrade.args[0]:])
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, BadRequest):
                raise exc.__context__ from None
            if isinstance(exc.__context__, StopReading):
                self.parser = _UNREAD
                self.in_head = False
                return
            raise
        except httptools.HttpParserInvalidURLError:
            raise BadRequest(400, "Invalid request target") from None
        except httptools.HttpParserError as exc:
            status, reason = _ERROR_REASONS.get(str(exc), (400, f"Malformed request: {exc}"))
            raise BadRequest(status, reason) from None
        else:
            if self.in_head:
                self._count_stall(len(data))
            if self.headers and not self.counting:
                # Fields go on in the next read, which counts them one by one from these on (a
                # small read's fit in the byte limit; their number is checked as fields are added).
                self.header_bytes = sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _count_stall(self, size: int) -> None:
        # Head callbacks set stalled to -1: a chunk that made progress is not counted, so body
        # bytes sharing a chunk with a head never count against it; only the bytes of chunks
        # that merely extend one unfinished line do (at most one chunk of slack).
        if self.stalled < 0:
            self.stalled = 0
            return
        self.stalled += size
        if self.stalled > self.head_budget:
            raise request_line_too_long() if not self.url else header_section_too_large()

    def _after_upgrade(self, leftover: bytes) -> None:
        if self.conn.upgrade_request is not None:
            self.conn.switch_protocols(leftover)
            return
        # Not an upgrade we take (h2c, or --ws none): llhttp stopped after the request head, which
        # is served as plain HTTP; go on parsing its body, if any, and the bytes that follow it.
        self.parser = _new_parser(self)
        if self.upgrade_body is not None:
            leftover = b"PUT / HTTP/1.1\r\n" + self.upgrade_body + b"\r\n\r\n" + leftover
            self.upgrade_body = None
            self.body_only = True
        if leftover:
            self.feed(leftover)

    def close(self) -> None:
        """The connection is gone: drop llhttp (it holds our callbacks) and the protocol."""
        self.parser = _UNREAD
        del self.conn  # (a callback after this would be a bug: an AttributeError says so)

    wants_response_complete = False  # llhttp parses pipelined requests eagerly
    holds_input = False  # (llhttp stops at a request after one that closes: the protocol's unread_input)
    waiting = False  # (the protocol queues them; h11's adapter holds their bytes instead)

    def response_complete(self) -> None:
        pass

    # -- llhttp callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_head = True
        self.stalled = -1

    def on_url(self, url: bytes) -> None:
        self.stalled = -1
        self.url += url
        if len(self.url) > self.limit_line:
            raise request_line_too_long()

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp keeps the whitespace after a field value, which is not part of it (RFC 9110 5.5).
        stripped = value.rstrip(_OWS)
        if stripped is not value:
            if name.lower() == b"transfer-encoding":
                # llhttp refuses "chunked<TAB>" only after the head, but takes "chunked ".
                raise BadRequest(400, "Malformed request: unsupported Transfer-Encoding")
            value = stripped
        self.headers.append((name.lower(), value))
        if self.counting:
            self.stalled = -1  # progress within a head begun earlier (see _count_stall)
            if len(self.headers) > self.limit_fields:
                raise too_many_header_fields()
            self.header_bytes += len(name) + len(value) + 4
            if self.header_bytes > self.limit_size:
                raise header_section_too_large()

    def on_headers_complete(self) -> None:
        url, headers = self.url, self.headers
        if len(headers) > self.limit_fields:  # (a small read's, see feed)
            raise too_many_header_fields()
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.in_head = False
        if self.body_only:
            return  # the synthetic head in front of an upgrade request's body
        parser = self.parser
        # llhttp's version string costs a str.format per request (~0.3 µs with what follows);
        # its keep-alive verdict is cheap and, for a request, true only for HTTP/1.1 unless a
        # Connection or Proxy-Connection field says keep-alive: the protocol, which reads
        # those, then asks confirm_http_version().
        version = "1.1" if parser.should_keep_alive() else parser.get_http_version()
        self.conn.on_request(parser.get_method(), url, version, headers)
        if parser.should_upgrade() and self.conn.upgrade_request is None:
            self.upgrade_body = _body_framing(headers)

    def confirm_http_version(self, reported: str) -> str:
        """The exact version of the request whose head is being handled (see above)."""
        return self.parser.get_http_version()

    def on_body(self, body: bytes) -> None:
        self.conn.on_body(body)

    def on_message_complete(self) -> None:
        if self.headers:
            # llhttp reports chunked trailer fields through on_header, after the head: drop them
            # (ASGI has no request trailers), or they would join the next request's headers.
            trailers, self.headers = self.headers, []
            self.header_bytes = 0
            check_trailers(trailers, self.limit_fields)
        if self.upgrade_body is not None:
            return  # llhttp skipped the body; the request completes once _after_upgrade parsed it
        self.body_only = False
        self.conn.on_message_complete()


def _new_parser(callbacks) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(callbacks)
    # Whether a request may follow another is the protocol's decision (it raises StopReading for
    # a request after one the connection closes after), not llhttp's: its keep-alive rules differ
    # (Proxy-Connection, repeated Connection lines, "keep-alivex") and it would refuse the rest.
    parser.set_dangerous_leniencies(lenient_keep_alive=True)
    return parser


class _Unread:
    """Stands in for the llhttp parser once the rest of the connection is left unread."""

    @staticmethod
    def feed_data(data: bytes) -> None:
        pass


_UNREAD = _Unread()


def _body_framing(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"content-length":
            value = value.strip()
            return b"content-length: " + value if value.strip(b"0") else None
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return b"transfer-encoding: chunked"
    return None
