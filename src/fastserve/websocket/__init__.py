"""WebSocket upgrades.

Contract with the HTTP protocol: ``upgrade_handler(config, app)`` returns None when WebSockets are
off (upgrade requests are then served as plain HTTP), or a callable
``handler(conn: HTTPProtocol, request: RequestHead, leftover: bytes)`` that takes over
``conn.transport`` after the parser adapter has stopped parsing HTTP: an ``UpgradedTransport``
becomes the transport's protocol and carries a ``WebSocketSession``.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("fastserve.error")


def upgrade_handler(config: Any, app: Any) -> Any:
    if config.ws == "none":
        return None
    try:
        from .session import SessionSettings, WebSocketSession
        from .upgraded import UpgradedTransport
    except ImportError as exc:
        if config.ws == "websockets":
            logger.error("--ws websockets needs the websockets package (>= 13): %s", exc)
            raise SystemExit(1) from None
        logger.warning("WebSocket support is off (%s); upgrade requests are served as plain HTTP.", exc)
        return None
    settings = SessionSettings(config)

    def handler(conn: Any, request: Any, leftover: bytes) -> None:
        carrier = UpgradedTransport(conn.transport)
        session = WebSocketSession(conn, request, settings, carrier)
        carrier.attach(session)
        session.start(request, leftover)

    return handler
