"""Why a request was refused, in terms both parser adapters share."""

from __future__ import annotations


class BadRequest(Exception):
    """A request fastserve answers with a 4xx status and then closes the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


HTTP2_PREFACE_HINT = "HTTP/2 connection preface received, but this port speaks HTTP/1.1 only"
UNSUPPORTED_METHOD = "Invalid or unsupported HTTP method"
TLS_ON_PLAIN_PORT_HINT = "This looks like TLS: use http:// or start the server with --ssl-certfile"


def tls_on_plain_port(error: BadRequest, first_bytes: bytes) -> BadRequest:
    """A TLS ClientHello (a handshake record: 0x16, version 3.x) sent to the plain HTTP port makes
    either parser refuse the first bytes; say what happened instead of how the parser failed."""
    if first_bytes[:2] == b"\x16\x03":
        return BadRequest(400, TLS_ON_PLAIN_PORT_HINT)
    return error


def request_line_too_long() -> BadRequest:
    return BadRequest(414, "Request line too long")


def header_section_too_large() -> BadRequest:
    return BadRequest(431, "Request header section too large")


def too_many_header_fields() -> BadRequest:
    return BadRequest(431, "Too many request header fields")


class StopReading(Exception):
    """Raised by ``on_request`` for a request that follows one after which the connection closes:
    the adapter leaves it and everything after it unread, and nothing answers it."""


FRAMING_TRAILERS = frozenset((b"content-length", b"transfer-encoding", b"connection", b"proxy-connection"))


def check_trailers(trailers, limit_fields: int) -> None:
    """A chunked body's trailer section holds at most --limit-request-fields fields, as a head
    does. llhttp acts on framing and connection fields even there (refusing Content-Length,
    closing after "Connection: close"); h11 ignores them. They may not be sent there (RFC 9110
    6.5.1), so both parsers refuse them."""
    if len(trailers) > limit_fields:
        raise too_many_header_fields()
    for name, _ in trailers:
        if name in FRAMING_TRAILERS:
            raise BadRequest(400, "Malformed request: framing field in the trailer section")

