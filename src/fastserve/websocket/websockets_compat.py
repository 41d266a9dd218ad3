"""Every use of the websockets library beyond its documented sans-I/O API, in one place.

fastserve parses the HTTP request itself, answers the handshake through its carrier, and frames
uncompressed messages itself (session._read_frames); websockets checks the handshake, negotiates
extensions and runs the rest of the protocol. Where that needs more than websockets documents,
it is here, so that an upgrade of websockets has one module to check.
"""

from __future__ import annotations

from typing import Any

from websockets.protocol import State
from websockets.server import ServerProtocol


def handshake_checker(extensions: Any) -> ServerProtocol:
    """A protocol whose accept() checks a request and negotiates the extensions; never fed."""
    return ServerProtocol(extensions=extensions)


def negotiate_extensions(extensions: Any, headers: Any) -> tuple[str | None, list[Any]]:
    """The Sec-WebSocket-Extensions answer and the extensions accepted for these request headers
    (a websockets ``Headers``), without the rest of accept(): an HTTP/2 handshake (RFC 8441) has
    no Upgrade, Connection or Sec-WebSocket-Key for it to check. Raises InvalidHandshake for a
    malformed header. (``process_extensions`` is a public method, though not in the API docs.)"""
    checker = handshake_checker(extensions)
    try:
        return checker.process_extensions(headers)
    finally:
        release(checker)


def open_protocol(extensions: list[Any], max_size: int | None) -> ServerProtocol:
    """The protocol for an accepted connection, parsing frames from the first byte (public API:
    ``state=State.OPEN``). websockets records the negotiated extensions only in accept(), which
    ran on the checker: they are handed over through the ``extensions`` attribute, which its frame
    reader and writer use."""
    protocol = ServerProtocol(state=State.OPEN, max_size=max_size)
    protocol.extensions = extensions
    return protocol


def release(protocol: ServerProtocol) -> None:
    """websockets' parser generator holds its protocol: closing it ends that reference cycle, so
    reference counting frees the protocol at once."""
    protocol.parser.close()


def set_message_size(protocol: ServerProtocol, size: int | None) -> None:
    """Keep websockets' count of the fragmented message in progress (None: none is) for the
    fragments session._read_frames takes itself: websockets checks the next frame, and the size
    limit, against it. (Read in the session as ``protocol.current_size``.)"""
    protocol.current_size = size
