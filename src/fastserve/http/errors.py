"""Why a request was refused, in terms both parser adapters share."""

from __future__ import annotations


class BadRequest(Exception):
    """A request fastserve answers with a 4xx status and then closes the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def request_line_too_long() -> BadRequest:
    return BadRequest(414, "Request line too long")


def header_section_too_large() -> BadRequest:
    return BadRequest(431, "Request header section too large")


def too_many_header_fields() -> BadRequest:
    return BadRequest(431, "Too many request header fields")


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone away (ASGI HTTP spec 2.4)."""


class InvalidResponse(RuntimeError):
    """The application sent a response fastserve refuses to put on the wire."""
