"""What a WebSocket session writes through: the contract between the session and its wire format.

Over HTTP/1.1 the carrier is the upgraded TCP connection (``upgraded.UpgradedTransport``); over
HTTP/2 it is one stream (RFC 8441). The session only ever decides *what* to answer (accept
with these headers, refuse with this status, these frame bytes, the end); the carrier renders it.

An HTTP/2 stream carrier, all it has to do (tests/test_inprocess_ws_extended_connect.py runs the
session over a fake one that records these calls):

1. The HTTP/2 side checks the request as a request (``:method CONNECT`` with ``:protocol``,
   ``:scheme``, ``:path`` and ``:authority`` present; a malformed one is its stream error, never
   a call here) and advertises SETTINGS_ENABLE_CONNECT_PROTOCOL only while
   ``websocket.stream_handler(config, app)`` is not None (WebSockets on).
2. It calls ``handler(conn, request, protocol, carrier)`` once: ``conn`` an ``UpgradedConnection``
   (below: the HTTP/2 connection), ``request`` a ``HandshakeRequest`` (``http_version`` "2",
   ``scheme`` the ``:scheme``, ``headers`` as ASGI wants them: pseudo-headers left out, the
   ``:authority`` first as ``host``), ``protocol`` the ``:protocol`` value, ``carrier`` the
   stream. It returns the ``WebSocketSession``; the session checks the handshake (RFC 8441 5:
   ``sec-websocket-version: 13``, no Sec-WebSocket-Key), answers refusals itself and starts the app.
3. What the stream receives goes to the session (``SessionEndpoint`` below): DATA payloads to
   ``feed`` (in order, as they come: the session frames them); the client's END_STREAM to
   ``feed_eof``, after which the carrier ends its side too once what is written has gone (as
   HTTP/1.1 closes the connection at the client's EOF); once the stream is over (both sides
   ended, reset by either side, or the connection gone) ``lost``, exactly once, the last call.
   ``pause_writing``/``resume_writing`` when what ``write`` buffers passes its high-water mark
   and drains again (the stream's send window or the connection's). The connection's own write
   pause (its transport's buffer is full) is not relayed: the carrier's ``connection_flow`` is
   the connection's FlowControl, and the session's send() waits on it as well (so does a session
   started while it is paused; the connection's --timeout-write watches it).
4. It renders the session's calls (``WebSocketCarrier`` below): ``accept`` as HEADERS
   ``:status 200`` with the headers given (lowercased, RFC 9113 8.2.1; there is no
   Sec-WebSocket-Accept, Upgrade or Connection among them; other connection-specific fields an
   app set are dropped); ``deny`` and ``refuse`` as a complete response (HEADERS, DATA,
   END_STREAM) that ends the exchange: then ``lost``, at once after a reset with NO_ERROR
   (RFC 9113 8.1) or at the client's END_STREAM (the session aborts after CLOSE_TIMEOUT);
   ``write`` as DATA; ``end`` as END_STREAM after what is written; ``abort`` as RST_STREAM
   (CANCEL), then ``lost``. Calls after ``end`` or ``abort`` (a second ``abort``, from a timer)
   are ignored. ``pause_reading``/``resume_reading``: stop and restart giving the client stream
   window (WINDOW_UPDATE) for this stream only, so that a slow session never stalls the
   connection's other streams; ``is_closing``: the stream is ending or over;
   ``get_write_buffer_size``: the DATA bytes waiting for window.
5. A WebSocket stream counts for ``--limit-concurrency`` and the concurrent-stream limit; the
   session registers itself with the server (``state.connection_opened``) for shutdown (1012).
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
        """No more bytes from us: the exchange ends once they are sent (H1: close; H2: END_STREAM)."""

    def abort(self) -> None:
        """Drop the exchange now, unsent bytes included (H1: abort; H2: RST_STREAM)."""

    def pause_reading(self) -> None:
        """Stop taking the client's bytes (H2: no more WINDOW_UPDATE for this stream)."""

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int:
        """Bytes written and not sent yet (H2: waiting for window): --timeout-write aborts the
        carrier when writes stay paused that long without this shrinking."""


class SessionEndpoint(Protocol):
    """What a carrier calls on its session (a websocket.session.WebSocketSession)."""

    def feed(self, data: bytes) -> None:
        """Bytes from the client (H2: a DATA frame's payload)."""

    def feed_eof(self) -> None:
        """The client will send no more (H2: END_STREAM)."""

    def lost(self, exc: Exception | None) -> None:
        """The exchange is over; the last call."""

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


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
    """What a session takes from the connection it runs on (HTTP/1.1: HTTPProtocol; HTTP/2: the
    connection whose stream carries it)."""

    loop: asyncio.AbstractEventLoop
    app: Any
    context: Any  # contextvars.Context the app's Task starts from a copy of (never one an app ran in)
    state: Any  # the server's ServerState
    config: Any
    server: tuple[str, int] | None
    tls: dict[str, Any] | None
    flow: Any  # its FlowControl: whether writing is paused at the hand-over
