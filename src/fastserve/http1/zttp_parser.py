"""Thin adapter (experimental, ``--http zttp``): zttp's HTTP/1.1 events -> HTTPProtocol calls.

zttp's H1Connection is pull-based, like h11: bytes in, then ``next_event()`` until NEED_DATA. It
parses a request only after ``start_next_cycle()``, which this adapter calls as soon as a request
is complete, so pipelined requests are parsed eagerly, as llhttp does. Every call into zttp's
HTTP/1.1 API is in this module.

What zttp 0.0.35 does its own way, and how the adapter maps it (benchmarks/RESULTS.md lists how
it differs from httptools and h11 as the parity fuzzers and the smuggling corpus saw it):
- It never says how many bytes a request head took, nor gives back the bytes it holds after
  one, so it cannot tell where an upgrade's new protocol starts: the adapter finds the end of the
  upgrade request's head itself (_after_head), on that rare path only.
- It has fixed limits (request line < 16 KiB, 100 header fields, a head of 64 KiB or so) and
  refuses beyond them with one message for all three; the adapter applies the --limit-request-*
  options itself first, and tells the three apart from the bytes it holds (413 never: 414/431).
- It does not say whether bytes of an unfinished head are waiting (for the header timeout): the
  adapter infers it from the events and where the read ended.
"""

from __future__ import annotations

import re

import zttp

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

_Request, _Data, _EndOfMessage = zttp.Request, zttp.Data, zttp.EndOfMessage
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://")
_METHOD_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TE_TRAILING_OWS = re.compile(rb"\ntransfer-encoding[ \t]*:[^\r\n]*[ \t]\r\n", re.IGNORECASE)
_REQUEST_LINE = re.compile(rb"[A-Z]+ [^ ]+ HTTP/1\.([01])(?:\r\n|\Z)")
_HOST_LINE = re.compile(rb"\nhost[ \t]*:", re.IGNORECASE)
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
_SIZE_LIMIT = "message exceeded configured size limit"
_REASONS = {
    "malformed request/status line": "Malformed request line",
    "malformed header field": "Malformed request: invalid header field",
    "ambiguous or conflicting message framing": "Malformed request: ambiguous or invalid framing",
    "malformed chunked encoding": "Malformed request: invalid chunked encoding",
}


class ZttpParser:
    __slots__ = ("conn", "h1", "limit_line", "limit_size", "limit_fields", "in_head", "in_body", "held", "unread")

    wants_response_complete = False  # requests are parsed eagerly (see the module docstring)
    waiting = False  # (the protocol queues them)

    def __init__(self, conn, config) -> None:
        self.conn = conn
        self.h1 = zttp.Connection(zttp.SERVER, zttp.HTTP1)
        self.limit_line = config.limit_request_line
        self.limit_size = config.limit_request_headers_size
        self.limit_fields = config.limit_request_fields
        self.in_head = False  # bytes of an unfinished request head are waiting in zttp
        self.in_body = False  # between a request head with a body and its end
        self.held = b""  # the reads since an unfinished head began (error reasons, upgrades)
        self.unread = False  # the rest of the connection is left unread (StopReading)

    def feed(self, data: bytes) -> None:
        if self.unread:
            return
        if self.in_head:
            self.held += data
        elif not self.in_body and data[0] not in _METHOD_START:
            if data[0] != 13 and data[0] != 10:
                # zttp waits for the end of the line: llhttp refuses a method at its first byte
                # (and a TLS ClientHello gets its hint at once).
                raise BadRequest(400, UNSUPPORTED_METHOD)
            # zttp refuses the empty lines a client may send before a request (RFC 9112 2.2: a
            # server SHOULD ignore them); those that start a read, at least, are skipped here.
            data = data.lstrip(b"\r\n")
            if not data:
                return
        self.h1.receive_data(data)
        try:
            self._drain(data)
        except StopReading:
            self.unread = True
            self.in_head = False
            self.held = b""

    def _drain(self, data: bytes) -> None:
        h1 = self.h1
        conn = self.conn
        completed = False  # a request ended in this read
        last_data = None  # the last body bytes of this read
        while True:
            try:
                event = h1.next_event()
            except zttp.RemoteProtocolError as exc:
                raise self._refusal(str(exc), data) from None
            kind = type(event)
            if kind is _Request:
                last_data = None
                # (inlined: once per request)
                target = event.target
                if len(target) > self.limit_line:
                    raise request_line_too_long()
                if target[0] != 0x2F and not _other_form(target, event.method):
                    raise BadRequest(400, "Invalid request target")  # zttp takes any target; llhttp does not
                block = event.headers
                if len(block) > self.limit_fields:
                    raise too_many_header_fields()
                headers = block.to_list(lowercase_names=True)
                held = self.held or data  # the reads the head came in
                if len(held) > self.limit_size:  # only a head that may be too large is measured
                    _check_size(headers, self.limit_size)
                if not event.end_stream and block.get(b"transfer-encoding") is not None:
                    _check_transfer_encoding(held)
                self.in_head = False
                self.held = b""
                version = event.http_version
                conn.on_request(event.method, target, _VERSIONS.get(version) or version.decode("ascii", "replace"), headers)
                if conn.upgrade_request is not None:
                    self._switch(held, event)
                    return
                if event.end_stream:
                    h1.start_next_cycle()
                    completed = True
                    conn.on_message_complete()
                else:
                    self.in_body = True
            elif kind is _Data:
                last_data = event.data
                conn.on_body(last_data)
            elif kind is _EndOfMessage:
                if event.trailers:
                    check_trailers([(name.lower(), value) for name, value in event.trailers])
                h1.start_next_cycle()
                self.in_body = False
                completed = True
                conn.on_message_complete()
            else:  # NEED_DATA
                break
        if self.in_body:
            self.in_head = False
        elif completed:
            # A head or a chunked body ends with CRLF CRLF, a body of a declared length with its
            # last bytes: anything else after it is the start of the next head.
            if data.endswith(b"\r\n\r\n") or (last_data is not None and data.endswith(last_data)):
                self.in_head = False
            else:
                self.in_head = bool(data.strip(b"\r\n"))  # (not just empty lines)
            self.held = data if self.in_head else b""
        elif not self.in_head and data.strip(b"\r\n"):
            self.in_head = True
            self.held = data

    def _switch(self, held: bytes, event) -> None:
        """An upgrade the connection takes (WebSocket, h2c): zttp stops at this request, and what
        follows its head is not HTTP/1.1."""
        self.unread = True
        conn = self.conn
        conn.on_message_complete()  # (as the other adapters: its body, if any, is not HTTP/1.1's)
        conn.switch_protocols(_after_head(held, event))

    def _refusal(self, message: str, data: bytes) -> BadRequest:
        if message == _SIZE_LIMIT:
            head = self.held or data
            line_end = head.find(b"\n")
            if line_end < 0 or line_end > self.limit_line + 1:
                return request_line_too_long()
            return header_section_too_large()  # (more than 100 fields, or its size limit)
        if (self.held or data).startswith(b"PRI * HTTP/2.0\r\n"):
            return BadRequest(400, HTTP2_PREFACE_HINT)
        if message == "malformed header field":
            hosts = _host_problem(self.held or data)
            if hosts is not None:
                return hosts
        return BadRequest(400, _REASONS.get(message, f"Malformed request: {message}"))

    @staticmethod
    def confirm_http_version(reported: str) -> str:
        return reported  # zttp reports the exact version

    def close(self) -> None:
        """The connection is gone: no reference cycle with the protocol."""
        self.unread = True
        self.conn = None

    def response_complete(self) -> None:
        pass


def _check_size(headers: list[tuple[bytes, bytes]], limit: int) -> None:
    if sum(len(n) + len(v) + 4 for n, v in headers) > limit:
        raise header_section_too_large()


def _check_transfer_encoding(head: bytes) -> None:
    """zttp strips the whitespace after "chunked" on a Transfer-Encoding line; llhttp refuses a
    trailing tab and, in the server's rules, a trailing space too (the smuggling corpus)."""
    if _TE_TRAILING_OWS.search(head) is not None:
        raise BadRequest(400, "Malformed request: unsupported Transfer-Encoding")


def _host_problem(data: bytes) -> BadRequest | None:
    """zttp refuses a missing or repeated Host as a malformed field: say which, as the others do."""
    for head in data.split(b"\r\n\r\n"):
        line = _REQUEST_LINE.match(head.lstrip(b"\r\n"))
        if line is None:
            continue
        hosts = len(_HOST_LINE.findall(head))
        if hosts > 1:
            return BadRequest(400, "Multiple Host headers")
        if hosts == 0 and line.group(1) == b"1":
            return BadRequest(400, "Missing Host header")
    return None


def _other_form(target: bytes, method: bytes) -> bool:
    """An asterisk, absolute or (for CONNECT) authority form target, as llhttp accepts them."""
    return target == b"*" or method == b"CONNECT" or _ABSOLUTE_FORM.match(target) is not None


def _after_head(data: bytes, request) -> bytes:
    """The bytes after the upgrade request's head in ``data`` (the reads since it began). zttp
    does not say where the head ended: find its request line (right after a body, maybe), then
    the CRLF CRLF that ends it (zttp refuses a bare LF), checked by parsing that head again."""
    line = request.method + b" " + request.target + b" HTTP/"
    start = data.find(line)
    while start >= 0:
        end = data.find(b"\r\n\r\n", start)
        if end >= 0 and _same_head(data[start:end + 4], request):
            return data[end + 4:]
        start = data.find(line, start + 1)
    raise BadRequest(400, "Malformed request: upgrade request not found")  # (never seen)


def _same_head(head: bytes, request) -> bool:
    probe = zttp.Connection(zttp.SERVER, zttp.HTTP1)
    probe.receive_data(head)
    try:
        event = probe.next_event()
    except zttp.RemoteProtocolError:
        return False
    return type(event) is _Request and list(event.headers) == list(request.headers)
