"""Thin adapter: h11 events -> HTTPProtocol calls.

h11 is used to parse requests only; responses are written by the shared cycle. After each
request h11 is given a fresh Connection holding the bytes it had not yet parsed, which is how
pipelining and HTTP/1.0 keep-alive work without h11 ever seeing our responses.
"""

from __future__ import annotations

import re

import h11
from h11._readers import ChunkedReader

from ..asgi.flow import PARSER, PIPELINE_HIGH_WATER
from .errors import (
    BadRequest,
    StopReading,
    check_trailers,
    header_section_too_large,
    request_line_too_long,
    too_many_header_fields,
)

_CONTENT_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\ntransfer-encoding[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # CTLs llhttp refuses in a head (HTAB is fine)
_SPACES = re.compile(rb"  +")
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://")
_MAX_LENGTH = 0xFFFFFFFFFFFFFFFF  # llhttp keeps lengths in 64 bits and refuses larger ones
# chunk = chunk-size [ chunk-ext ] CRLF, as llhttp reads it: no whitespace anywhere, extension
# names are tokens, values tokens then maybe a quoted string; either may be empty, but no ";"
# right before the CRLF.
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_HEADER = re.compile(rb"([0-9A-Fa-f]+)(?:;%s*(?:=%s*(?:%s)?)?)*(?<!;)\r\n" % (_TOKEN, _TOKEN, _QUOTED))
_H11_REASONS = {
    "Missing mandatory Host: header": "Missing Host header",
    "Found multiple Host: headers": "Multiple Host headers",
}


class H11Parser:
    __slots__ = ("conn", "h11", "unread", "limit_line", "limit_size", "limit_fields", "max_event", "request_done", "response_done", "holding")

    def __init__(self, conn, config) -> None:
        self.conn = conn
        self.limit_line = config.limit_request_line
        self.limit_size = config.limit_request_headers_size
        self.limit_fields = config.limit_request_fields
        self.max_event = config.limit_request_line + config.limit_request_headers_size + 4
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_event)
        self.request_done = False
        self.response_done = False
        self.unread = False  # the rest of the connection is left unread (StopReading)
        self.holding = False  # reading is paused: h11 holds more unparsed bytes than it may

    def feed(self, data: bytes) -> None:
        conn = self.h11
        if self.unread:
            return
        if conn.their_state is h11.IDLE:
            self._receive_head(data)
        elif conn.their_state is h11.MUST_CLOSE:
            # After an HTTP/1.0 or Connection: close request h11 refuses any byte, llhttp only
            # bytes after a request that closes. Hold them: response_complete() parses them if
            # the connection is kept alive (HTTP/1.0 keep-alive), else the connection closes.
            if len(conn.trailing_data[0]) + len(data) > self.max_event:
                raise BadRequest(400, "Malformed request: data after the last request")
            conn.receive_data(data)
            return
        else:
            conn.receive_data(data)
        self._run()

    def _run(self) -> None:
        try:
            self._process()
        except StopReading:
            self.unread = True

    def _receive_head(self, data: bytes) -> None:
        """Bytes of a request head not yet complete: h11 has parsed none of them, so they can
        still be held to llhttp's rules, which differ from h11's in a few places."""
        conn = self.h11
        if not conn.trailing_data[0]:
            # llhttp skips CR and LF before a request line (RFC 9112 2.2: ignore empty lines).
            data = data.lstrip(b"\r\n")
            if not data:
                return  # (b"" would tell h11 the connection has closed)
        conn.receive_data(data)
        head = conn.trailing_data[0]
        line_end = head.find(b"\r\n")
        if line_end > 0 and head.find(b"  ", 0, line_end) >= 0:
            # llhttp reads "GET  /  HTTP/1.1" as "GET / HTTP/1.1" (RFC 9112 3: a recipient MAY
            # split the request line on whitespace); h11 splits on single spaces only.
            head = _SPACES.sub(b" ", head[:line_end]) + head[line_end:]
            self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_event)
            self.h11.receive_data(head)
        self._check_raw_head(head)

    def _process(self) -> None:
        """Deliver every request h11 can parse now. Pipelined requests whose responses complete
        as they are parsed are handled in this loop: never a call per request deeper."""
        conn = self.h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._bad_request(exc) from None
            kind = type(event)
            if kind is h11.Data:
                data = event.data
                self.conn.on_body(data if type(data) is bytes else bytes(data))  # ASGI says bytes
            elif kind is h11.Request:
                self._on_request(event)
                if type(conn._reader) is ChunkedReader:
                    conn._reader = _StrictChunkedReader()
            elif kind is h11.EndOfMessage:
                if event.headers:
                    check_trailers(event.headers, self.limit_fields)
                self.request_done = True
                self.conn.on_message_complete()
                if self.conn.upgrade_request is not None:
                    self.conn.switch_protocols(conn.trailing_data[0])
                    return
                if self.response_done:
                    if not self._renew():
                        return
                    conn = self.h11
                    continue
                if conn.their_state is h11.MUST_CLOSE:
                    return  # HTTP/1.0 or Connection: close; see feed()
            else:  # NEED_DATA, PAUSED (waiting for our response) or ConnectionClosed
                if event is h11.PAUSED and len(conn._receive_buffer) > PIPELINE_HIGH_WATER:
                    self._hold()
                return

    def close(self) -> None:
        self.conn = None  # the connection is gone: no reference cycle with the protocol

    @staticmethod
    def confirm_http_version(reported: str) -> str:
        return reported  # h11 reports the exact version

    def _on_request(self, event: h11.Request) -> None:
        self.request_done = self.response_done = False
        target = event.target
        if len(target) > self.limit_line:
            raise request_line_too_long()
        if target[:1] not in (b"/", b"*") and event.method != b"CONNECT" and not _ABSOLUTE_FORM.match(target):
            raise BadRequest(400, "Invalid request target")  # as llhttp: origin, absolute or asterisk form
        headers = list(event.headers)
        if len(headers) > self.limit_fields:
            raise too_many_header_fields()
        if sum(len(n) + len(v) + 4 for n, v in headers) > self.limit_size:
            raise header_section_too_large()
        self.conn.on_request(event.method, target, event.http_version.decode("ascii"), headers)

    @property
    def in_head(self) -> bool:
        """A request head has started arriving but is not complete yet."""
        return self.h11.their_state is h11.IDLE and bool(self.h11.trailing_data[0])

    @property
    def holds_input(self) -> bool:
        """Bytes came after a request that closes the connection (h11 holds them: see feed()): if
        the connection closes now, they are input left unread, as llhttp's are (unread_input)."""
        conn = self.h11
        return conn.their_state is h11.MUST_CLOSE and bool(conn.trailing_data[0])

    wants_response_complete = True  # h11 holds pipelined bytes until told the response is done

    @property
    def waiting(self) -> bool:
        """Bytes fed now would only be held until the response to the current request is done."""
        return self.request_done and not self.response_done

    def response_complete(self) -> None:
        self.response_done = True
        if self.request_done:
            holding, self.holding = self.holding, False
            if self._renew():
                self._run()
            if holding and not self.holding and self.conn is not None:
                self.conn.flow.resume_reading(PARSER)

    def _renew(self) -> bool:
        """A fresh h11 Connection for the next request, given the bytes the last one left; true
        if there are any to parse."""
        data, closed = self.h11.trailing_data
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_event)
        self.request_done = self.response_done = False
        if data:
            self._receive_head(data)
        if closed:
            self.h11.receive_data(b"")
        return bool(data)

    def _hold(self) -> None:
        # h11 keeps everything after a request until our response is done: past the high-water
        # mark, stop reading (as the protocol does for requests httptools parsed ahead).
        self.holding = True
        self.conn.flow.pause_reading(PARSER)

    def _check_raw_head(self, data: bytes) -> None:
        _check_raw_lines(data)
        end = data.find(b"\r\n\r\n")
        # Header values are checked once their line is complete.
        head = data[:end] if end >= 0 else data[:data.rfind(b"\r\n")]
        # h11 merges repeated equal Content-Length values ("3, 3" or two lines); llhttp refuses.
        if head.find(b"ength") >= 0:
            lengths = _CONTENT_LENGTH.findall(head)
            if len(lengths) > 1:
                raise BadRequest(400, "Multiple Content-Length headers")
            if lengths:
                value = lengths[0].strip()
                if not (value.isdigit() and value.isascii()) or int(value) > _MAX_LENGTH:
                    raise BadRequest(400, "Malformed request: invalid Content-Length")
        # h11 lower-cases and strips a Transfer-Encoding value and takes "chunked" in any case;
        # llhttp refuses some of those spellings only after the head. Only "chunked" is served.
        if head.find(b"ncoding") >= 0:
            for value in _TRANSFER_ENCODING.findall(head):
                if value != b"chunked":
                    raise BadRequest(400, "Malformed request: unsupported Transfer-Encoding")

    def _bad_request(self, exc: h11.RemoteProtocolError) -> BadRequest:
        message = str(exc)
        if message == "Receive buffer too long":
            first_line_end = self.h11.trailing_data[0].find(b"\n")
            if first_line_end < 0 or first_line_end > self.limit_line + 2:
                return request_line_too_long()
            return header_section_too_large()
        if "illegal request line" in message or "request line" in message:
            return BadRequest(400, "Malformed request line")
        if message in _H11_REASONS:
            return BadRequest(400, _H11_REASONS[message])
        return BadRequest(400, f"Malformed request: {message}")


def _check_raw_lines(data: bytes) -> None:
    """Line rules h11 is lax about and llhttp is not, for a head or a trailer section (complete
    or not): CRLF only, no obsolete line folding, no control characters."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    if head.count(b"\n") != head.count(b"\r\n"):
        raise BadRequest(400, "Malformed request: bare LF line ending")
    if head.count(b"\r") != head.count(b"\r\n") and not (end < 0 and head.endswith(b"\r") and head.count(b"\r") == head.count(b"\r\n") + 1):
        raise BadRequest(400, "Malformed request: bare CR")
    if head.find(b"\n ") >= 0 or head.find(b"\n\t") >= 0:
        raise BadRequest(400, "Malformed request: obsolete line folding")
    if _CONTROL.search(head) is not None:
        raise BadRequest(400, "Malformed request: control character in the request head")


class _StrictChunkedReader(ChunkedReader):
    """h11's chunked body reader, held to llhttp's rules: chunk sizes fit in 64 bits, chunk
    extensions follow the grammar, and a trailer section has the same line rules as a head
    (h11 reads extensions as ";.*", sizes of up to 20 hex digits, and bare LF in trailers)."""

    def __call__(self, buf):
        if self._reading_trailer:
            data = buf._data
            if data[:2] != b"\r\n":
                if data[:1] == b"\n":
                    raise BadRequest(400, "Malformed request: bare LF line ending")
                end = data.find(b"\r\n\r\n")
                _check_raw_lines(bytes(data if end < 0 else data[:end + 4]))
                if end < 0:
                    return None
        elif self._bytes_in_chunk == 0:
            pending = self._bytes_to_discard
            if pending:  # the CRLF after a chunk's data (h11 < 0.16 counts it and never checks it)
                footer = pending if isinstance(pending, bytes) else b"\r\n"[2 - pending:]
                data = buf.maybe_extract_at_most(len(footer))
                if data is None:
                    return None
                if data != footer[:len(data)]:
                    raise BadRequest(400, "Malformed request: no CRLF after chunk data")
                rest = footer[len(data):]
                self._bytes_to_discard = rest if isinstance(pending, bytes) else len(rest)
                if rest:
                    return None
            line = buf.maybe_extract_next_line()
            if line is None:
                if b"\n" in buf._data:  # h11 would wait for a CRLF that never ends this line
                    raise BadRequest(400, "Malformed request: invalid chunk header")
                return None
            match = _CHUNK_HEADER.fullmatch(line)
            if match is None or int(match.group(1), 16) > _MAX_LENGTH:
                raise BadRequest(400, "Malformed request: invalid chunk header")
            self._bytes_in_chunk = int(match.group(1), 16)
            if self._bytes_in_chunk == 0:
                self._reading_trailer = True
                return self(buf)
        return super().__call__(buf)
