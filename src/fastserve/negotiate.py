"""Which connection class serves a socket the listeners accepted.

Every connection starts as HTTP/1.1 (``HTTPProtocol`` with the parser ``--http`` picks), wrapped in a
subclass per operations feature that is on (health path, body limit, metrics, PROXY protocol), so a
feature that is off costs nothing. With HTTP/2 on (``--http2``), a connection becomes an
``H2Connection`` when TLS ALPN selected "h2" (checked once, in connection_made) or when its first
bytes are the HTTP/2 preface (checked on the HTTP/1.1 refusal path only: the preface is not a
request either parser accepts, so HTTP/1.1 requests pay nothing for the check).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .asgi.scope import scope_address
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
    codec = http2_codec(config)
    if codec is not None:
        state.h2_takeover = h2_takeover(config, app, state, loop, codec)
        if config.metrics_bind:
            from .metrics import enable

            state.h2_request_done = enable().request_done
        if config.is_ssl:
            protocol_class = with_alpn(protocol_class, state.h2_takeover)

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


def http2_codec(config: Config) -> type | None:
    """The HTTP/2 codec class connections use, or None when HTTP/2 is off (--http2 off, or auto
    without a codec installed). --http2 on without one raises ImportError."""
    if config.http2 == "off":
        return None
    from .http2 import codec_class

    try:
        return codec_class(config.http2_codec, config.http2_settings())
    except ImportError:
        if config.http2 == "on" or config.http2_codec != "auto":
            raise
        return None


def alpn_protocols(config: Config) -> list[str]:
    """What TLS offers in ALPN: h2 first when HTTP/2 is on (clients pick by our order)."""
    return ["h2", "http/1.1"] if http2_codec(config) is not None else ["http/1.1"]


def h2_takeover(config: Config, app: Any, state: ServerState, loop: asyncio.AbstractEventLoop, codec: type):
    """The ServerState.h2_takeover callable: serve a transport as HTTP/2 from now on."""
    from .http2.codec import H2ProtocolError
    from .http2.connection import H2Connection

    settings = config.http2_settings()

    def takeover(transport: Any, server: Any, client: Any, scheme: str, data: bytes, upgrade: Any) -> Any:
        """`upgrade`: None, or an h2c upgrade (HTTP2-Settings value, (method, target, fields),
        the 101 response to write once the codec took the settings, the length of the HTTP/1.1
        body that comes first in `data` and later reads). Returns the connection, or None when
        the codec refused the HTTP2-Settings value (nothing is written then)."""
        conn = H2Connection(config, app, state, codec, settings, loop)
        events = None
        if upgrade is not None:
            settings_header, request, switching, body_length = upgrade
            try:
                events = conn.codec.initiate_upgrade(settings_header, *request)
            except H2ProtocolError:
                return None
            if body_length:
                conn.expect_h1_body(events, body_length)
            transport.write(switching)
        transport.set_protocol(conn)
        conn.start(transport, server, client, scheme, events)
        if not transport.is_reading():
            transport.resume_reading()  # (paused by the HTTP/1.1 side: body or backlog)
        if data:
            conn.data_received(data)
        return conn

    return takeover


def with_alpn(base: type, takeover: Any) -> type:
    """``base``, but a TLS connection whose ALPN selected h2 is handed to HTTP/2 at once."""

    class ALPNSelected(base):  # type: ignore[valid-type, misc]
        __slots__ = ()

        def connection_made(self, transport: Any) -> None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                self.parser.close()
                server = scope_address(transport.get_extra_info("sockname"))
                takeover(transport, server, scope_address(transport.get_extra_info("peername")), "https", b"", None)
                return
            super().connection_made(transport)

    ALPNSelected.__name__ = base.__name__
    return ALPNSelected
