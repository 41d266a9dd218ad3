"""WebSocket upgrades.

Contract with the HTTP protocol: ``upgrade_handler(config, app)`` returns None when WebSockets are
off (upgrade requests are then served as plain HTTP), or a callable
``handler(conn: HTTPProtocol, request: RequestHead, leftover: bytes)`` that takes over
``conn.transport`` after the parser adapter has stopped parsing HTTP: an ``UpgradedTransport``
becomes the transport's protocol and carries a ``WebSocketSession``.

Over HTTP/2 (RFC 8441), ``stream_handler(config, app)`` returns None in the same cases, or a
callable ``handler(conn, request, protocol, carrier) -> WebSocketSession`` for an extended
CONNECT on a stream that is its own carrier (the whole contract: carrier.py).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("fastserve.error")


def _session_settings(config: Any) -> Any:
    """The sessions' per-server settings, or None when WebSockets are off."""
    if config.ws == "none":
        return None
    try:
        from .session import SessionSettings
    except ImportError as exc:
        if config.ws == "websockets":
            logger.error("--ws websockets needs the websockets package (>= 13): %s", exc)
            raise SystemExit(1) from None
        logger.warning("WebSocket support is off (%s); upgrade requests are served as plain HTTP.", exc)
        return None
    return SessionSettings(config)


def upgrade_handler(config: Any, app: Any) -> Any:
    settings = _session_settings(config)
    if settings is None:
        return None
    from .session import WebSocketSession
    from .upgraded import UpgradedTransport

    def handler(conn: Any, request: Any, leftover: bytes) -> None:
        carrier = UpgradedTransport(conn.transport)
        session = WebSocketSession(conn, request, settings, carrier)
        carrier.attach(session)
        session.start(request, leftover)

    return handler


def stream_handler(config: Any, app: Any) -> Any:
    settings = _session_settings(config)
    if settings is None:
        return None
    from .session import WebSocketSession

    def handler(conn: Any, request: Any, protocol: str | None, carrier: Any) -> WebSocketSession:
        session = WebSocketSession(conn, request, settings, carrier)
        # Before the start: on Python 3.12+ the app's first step runs inside it (eager Task
        # start) and may already write through the carrier, which reaches back to its session.
        carrier.session = session
        session.start_extended_connect(request, protocol)
        return session

    return handler
