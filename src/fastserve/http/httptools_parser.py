"""Thin adapter: llhttp (via httptools) callbacks -> HTTPProtocol calls."""

from __future__ import annotations

import httptools

from .errors import BadRequest, header_section_too_large, request_line_too_long, too_many_header_fields

_ERROR_REASONS = {
    "Pause on PRI/Upgrade": (400, "HTTP/2 connection preface received, but this port speaks HTTP/1.1 only"),
    "Invalid method encountered": (400, "Invalid or unsupported HTTP method"),
}


class HttptoolsParser:
    __slots__ = ("conn", "parser", "url", "headers", "header_bytes", "in_head", "head_fed", "limit_line", "limit_size", "limit_fields", "head_budget")

    def __init__(self, conn, config) -> None:
        self.conn = conn
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.in_head = False
        self.head_fed = 0
        self.limit_line = config.limit_request_line
        self.limit_size = config.limit_request_headers_size
        self.limit_fields = config.limit_request_fields
        # llhttp buffers a partial header line itself; bound what one head may make it hold.
        self.head_budget = config.limit_request_line + config.limit_request_headers_size + 4

    def feed(self, data: bytes) -> None:
        if self.in_head:
            self.head_fed += len(data)
            if self.head_fed > self.head_budget:
                raise request_line_too_long() if not self.url or len(self.url) > self.limit_line else header_section_too_large()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._after_upgrade(data[upgrade.args[0]:])
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, BadRequest):
                raise exc.__context__ from None
            raise
        except httptools.HttpParserInvalidURLError:
            raise BadRequest(400, "Invalid request target") from None
        except httptools.HttpParserError as exc:
            status, reason = _ERROR_REASONS.get(str(exc), (400, f"Malformed request: {exc}"))
            raise BadRequest(status, reason) from None

    def _after_upgrade(self, leftover: bytes) -> None:
        if self.conn.upgrade_request is not None:
            self.conn.switch_protocols(leftover)
            return
        # Not an upgrade we take (h2c, or --ws none): llhttp stopped after the request, which was
        # served as plain HTTP with its body; go on parsing the bytes that follow it.
        self.parser = httptools.HttpRequestParser(self)
        if leftover:
            self.feed(leftover)

    def response_complete(self) -> None:
        pass

    # -- llhttp callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.in_head = True
        self.head_fed = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limit_line:
            raise request_line_too_long()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.limit_size:
            raise header_section_too_large()
        if len(self.headers) > self.limit_fields:
            raise too_many_header_fields()

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        self.conn.on_request(parser.get_method(), self.url, parser.get_http_version(), self.headers)

    def on_body(self, body: bytes) -> None:
        self.conn.on_body(body)

    def on_message_complete(self) -> None:
        self.conn.on_message_complete()
