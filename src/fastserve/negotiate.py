"""Which connection class serves a socket the listeners accepted.

Today every connection is HTTP/1.1 (``HTTPProtocol`` with the parser ``--http`` picks), wrapped in a
subclass per operations feature that is on (health path, body limit, metrics, PROXY protocol), so a
feature that is off costs nothing. Choosing HTTP/2 by ALPN or by its cleartext preface belongs here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .config import Config
from .http1 import parser_class
from .http1.connection import HTTPProtocol
from .logging import debug_protocol_class

if TYPE_CHECKING:
    from .state import ServerState

logger = logging.getLogger("fastserve.error")


def connection_factory(config: Config, app: Any, state: ServerState, loop: asyncio.AbstractEventLoop):
    """The protocol factory the listeners call for every accepted connection."""
    parser = parser_class(config.http)
    protocol_class = protocol_class_for(config)

    def factory() -> HTTPProtocol:
        return protocol_class(config, app, state, parser, loop)

    return factory


def protocol_class_for(config: Config) -> type:
    """HTTPProtocol, or a subclass per feature that is on: a feature that is off costs nothing."""
    from .health import with_health_path
    from .limits import with_body_limit
    from .metrics import with_metrics
    from .proxy_protocol import with_proxy_protocol

    protocol_class = with_health_path(with_body_limit(HTTPProtocol, config), config)
    protocol_class = with_metrics(protocol_class, config)  # above the health path: health checks count
    protocol_class = with_proxy_protocol(protocol_class, config)  # outermost: it sees the bytes first
    if logger.isEnabledFor(logging.DEBUG):
        protocol_class = debug_protocol_class(protocol_class)
    return protocol_class
