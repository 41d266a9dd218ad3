"""What a WebSocket session writes through: the contract between the session and its wire format.

Over HTTP/1.1 the carrier is the upgraded TCP connection (``upgraded.UpgradedTransport``); over
HTTP/2 it would be one stream (RFC 8441). The session only ever decides *what* to answer (accept
with these headers, refuse with this status, these frame bytes, the end); the carrier renders it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class WebSocketCarrier(Protocol):
    def accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Complete the opening handshake with these response headers (H1: 101; H2: :status 200)."""

    def deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """The app's own HTTP response instead of the handshake (websocket.http.response.*); the
        carrier adds only its framing (length, connection close) and ends the exchange."""

    def refuse(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] = ...) -> None:
        """The server's plain-text refusal (400, 403, 426, 500, 503); ends the exchange."""

    def write(self, data: bytes) -> None:
        """WebSocket frame bytes, after the accept."""

    def end(self) -> None:
        """No more bytes from us: the exchange ends once they are sent (H1: close)."""

    def abort(self) -> None:
        """Drop the exchange now, unsent bytes included (H1: abort; H2: RST_STREAM)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool: ...


class HandshakeRequest(Protocol):
    """The parsed upgrade request, as the wire format hands it over (an asgi.request.RequestHead).
    Declared here so that the WebSocket modules need not import the HTTP ones."""

    path: str
    raw_path: bytes
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    http_version: str
    client: tuple[str, int] | None
    scheme: str


class UpgradedConnection(Protocol):
    """What a session takes over from the connection it was upgraded from (HTTP/1.1: HTTPProtocol)."""

    loop: asyncio.AbstractEventLoop
    app: Any
    state: Any  # the server's ServerState
    config: Any
    server: tuple[str, int] | None
    tls: dict[str, Any] | None
    flow: Any  # its FlowControl: whether writing is paused at the hand-over
