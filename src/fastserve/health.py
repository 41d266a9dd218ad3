"""``--health-path``: liveness and readiness answered by the server, without the app.

``GET`` (or ``HEAD``) on the path is 200 while the server serves and 503 once shutdown has begun,
including the ``--shutdown-delay`` during which requests are still served, so a load balancer
takes the instance out of rotation before its listeners close. Chosen when the server starts: with
no health path the plain protocol class is used and no request pays for the check.
"""

from __future__ import annotations

from typing import Any

from .http1.render import CONNECTION_CLOSE, status_line

SERVING = b"OK\n"
STOPPING = b"shutting down\n"


def health_protocol_class(base: type, path: str) -> type:
    """``base`` (an HTTPProtocol class) answering requests for ``path`` itself."""

    class HealthHTTPProtocol(base):
        __slots__ = ()

        def _start(self, cycle: Any) -> None:
            if cycle.scope["path"] != path:
                super()._start(cycle)
                return
            self.active = cycle
            serving = not self.state.shutting_down
            if not serving or self.closing:
                cycle.keep_alive = False
            cycle.status = 200 if serving else 503
            body = SERVING if serving else STOPPING
            cycle.head_sent = cycle.response_complete = True
            cycle.bytes_sent = 0 if cycle.is_head else len(body)
            self.writer.write(health_response(cycle, body, self.state.default_headers))
            self.on_response_complete(cycle)

    return HealthHTTPProtocol


def health_response(cycle: Any, body: bytes, default_headers: bytes) -> bytes:
    if not cycle.keep_alive:
        connection = CONNECTION_CLOSE
    elif cycle.http_version == "1.0":
        connection = b"connection: keep-alive\r\n"
    else:
        connection = b""
    head = b"".join((
        status_line(cycle.status),
        default_headers,
        b"content-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\n",
        b"content-length: %d\r\n" % len(body),
        connection,
        b"\r\n",
    ))
    return head if cycle.is_head else head + body


def with_health_path(base: type, config: Any) -> type:
    return base if not config.health_path else health_protocol_class(base, config.health_path)
