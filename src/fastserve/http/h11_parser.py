"""Thin adapter: h11 events -> HTTPProtocol calls.

h11 is used to parse requests only; responses are written by the shared cycle. After each
request h11 is given a fresh Connection holding the bytes it had not yet parsed, which is how
pipelining and HTTP/1.0 keep-alive work without h11 ever seeing our responses.
"""

from __future__ import annotations

import re

import h11

from .errors import BadRequest, header_section_too_large, request_line_too_long, too_many_header_fields


_CONTENT_LENGTH = re.compile(rb"\ncontent-length[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_H11_REASONS = {
    "Missing mandatory Host: header": "Missing Host header",
    "Found multiple Host: headers": "Multiple Host headers",
}


class H11Parser:
    __slots__ = ("conn", "h11", "limit_line", "limit_size", "limit_fields", "max_event", "request_done", "response_done")

    def __init__(self, conn, config) -> None:
        self.conn = conn
        self.limit_line = config.limit_request_line
        self.limit_size = config.limit_request_headers_size
        self.limit_fields = config.limit_request_fields
        self.max_event = config.limit_request_line + config.limit_request_headers_size + 4
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_event)
        self.request_done = False
        self.response_done = False

    def feed(self, data: bytes) -> None:
        self.h11.receive_data(data)
        if self.h11.their_state is h11.IDLE:
            self._check_raw_head(self.h11.trailing_data[0])
        self._process()

    def _process(self) -> None:
        conn = self.h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._bad_request(exc) from None
            kind = type(event)
            if kind is h11.Data:
                self.conn.on_body(event.data)
            elif kind is h11.Request:
                self._on_request(event)
            elif kind is h11.EndOfMessage:
                self.request_done = True
                self.conn.on_message_complete()
                if self.conn.upgrade_request is not None:
                    self.conn.switch_protocols(conn.trailing_data[0])
                    return
                if self.response_done:
                    self._next_cycle()
                    return
            else:  # NEED_DATA, PAUSED (waiting for our response) or ConnectionClosed
                return

    def _on_request(self, event: h11.Request) -> None:
        self.request_done = self.response_done = False
        target = event.target
        if len(target) > self.limit_line:
            raise request_line_too_long()
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

    wants_response_complete = True  # h11 holds pipelined bytes until told the response is done

    def response_complete(self) -> None:
        self.response_done = True
        if self.request_done:
            self._next_cycle()

    def _next_cycle(self) -> None:
        data, closed = self.h11.trailing_data
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_event)
        self.request_done = self.response_done = False
        if data:
            self._check_raw_head(data)
            self.h11.receive_data(data)
        if closed:
            self.h11.receive_data(b"")
        if data:
            self._process()

    def _check_raw_head(self, data: bytes) -> None:
        # h11 accepts bare LF line ends and obsolete line folding; llhttp rejects both, and so
        # must we, or the two parsers would disagree about where a request ends.
        end = data.find(b"\r\n\r\n")
        head = data if end < 0 else data[:end]
        if head.count(b"\n") != head.count(b"\r\n"):
            raise BadRequest(400, "Malformed request: bare LF line ending")
        if b"\n " in head or b"\n\t" in head:
            raise BadRequest(400, "Malformed request: obsolete line folding")
        # h11 merges repeated equal Content-Length values ("3, 3" or two lines); llhttp refuses.
        if b"ength" in head:
            lengths = _CONTENT_LENGTH.findall(head)
            if len(lengths) > 1:
                raise BadRequest(400, "Multiple Content-Length headers")
            if lengths and not lengths[0].strip().isdigit():
                raise BadRequest(400, "Malformed request: invalid Content-Length")

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
