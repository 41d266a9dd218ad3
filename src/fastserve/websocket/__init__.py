"""WebSocket upgrades.

Contract with the HTTP protocol: ``upgrade_handler(config, app)`` returns None when WebSockets are
off (upgrade requests are then served as plain HTTP), or a callable
``handler(conn: HTTPProtocol, request: UpgradeRequest, leftover: bytes)`` that takes over
``conn.transport`` after the parser adapter has stopped parsing HTTP.
"""

from __future__ import annotations

from typing import Any


def upgrade_handler(config: Any, app: Any) -> Any:
    return None  # the WebSocket engine lands with the WebSocket issue
