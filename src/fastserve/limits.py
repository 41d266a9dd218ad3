"""``--limit-request-body``: the largest request body accepted, for both parsers.

Chosen when the server starts: without the option, connections use the plain protocol class and
pay nothing. With it, a subclass checks a declared Content-Length before the app runs, and counts
the bytes of a chunked body as they arrive. Either way the answer is the protocol's own refusal
(``BadRequest(413)`` through ``refuse()``): a 413 when no response has started, ``http.disconnect``
to an app already reading, then the connection closes.
"""

from __future__ import annotations

from typing import Any

from .http1.errors import BadRequest

TOO_LARGE = "Request body too large"


def body_limit_protocol_class(base: type, limit: int) -> type:
    """``base`` (an HTTPProtocol class) refusing request bodies over ``limit`` bytes."""

    class BodyLimitHTTPProtocol(base):
        __slots__ = ("body_received",)

        def on_request(self, method: bytes, target: bytes, http_version: str, headers: list) -> None:
            previous = self.cycle
            if previous is None or previous.keep_alive:  # otherwise never read (see on_request)
                for name, value in headers:
                    if name == b"content-length" and value.isdigit() and int(value) > limit:
                        raise BadRequest(413, TOO_LARGE)
            self.body_received = 0
            super().on_request(method, target, http_version, headers)

        def on_body(self, data: bytes) -> None:
            self.body_received += len(data)
            if self.body_received > limit:
                raise BadRequest(413, TOO_LARGE)
            super().on_body(data)

    return BodyLimitHTTPProtocol


def with_body_limit(base: type, config: Any) -> type:
    limit = config.limit_request_body
    return base if limit is None else body_limit_protocol_class(base, limit)
