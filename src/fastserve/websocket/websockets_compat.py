"""Every use of the websockets library beyond its documented sans-I/O API, in one place.

fastserve parses the HTTP request itself, answers the handshake through its carrier, frames
messages itself (session._read_frames) and does permessage-deflate itself (deflate.py);
websockets checks the handshake, negotiates extensions and runs the rest of the protocol (control
frames, closing, the rules of fragmentation, faults and their close codes).

Documented (docs/reference/sansio/server.rst): the ServerProtocol constructor, ``state=OPEN``
included; accept(), send_*(), fail(), receive_data/eof(), events_received(), data_to_send(); the
attributes ``id``, ``logger``, ``state``, ``handshake_exc``, ``close_code``, ``close_reason``,
``close_exc``. Beyond that:

- here: process_extensions() (a public method, not in the docs), ``parser.close()`` (release),
  and one write, ``current_size`` (set_message_size), for which there is no public way;
- read in session.py, where they are read once per frame or message (a function call each would
  slow the path every message takes): ``current_size``, ``eof_sent``, ``parser_exc``,
  ``close_rcvd``, ``close_sent``.

tests/test_websocket_units.py (test_websockets_internals_*) checks each of these against the
installed websockets, so that an upgrade fails there first.
"""

from __future__ import annotations

from typing import Any

from websockets.protocol import State
from websockets.server import ServerProtocol


def handshake_checker(extensions: Any) -> ServerProtocol:
    """A protocol whose accept() checks a request and negotiates the extensions; never fed."""
    return ServerProtocol(extensions=extensions)


def negotiate_extensions(extensions: Any, headers: Any) -> str | None:
    """The Sec-WebSocket-Extensions answer for these request headers (a websockets ``Headers``),
    without the rest of accept(): an HTTP/2 handshake (RFC 8441) has no Upgrade, Connection or
    Sec-WebSocket-Key for it to check. Raises InvalidHandshake for a malformed header.
    (``process_extensions`` is a public method, though not in the API docs.)"""
    checker = handshake_checker(extensions)
    try:
        return checker.process_extensions(headers)[0]
    finally:
        release(checker)


def open_protocol(max_size: int | None) -> ServerProtocol:
    """The protocol for an accepted connection, parsing frames from the first byte: public API,
    ``ServerProtocol(state=State.OPEN, ...)`` (docs: reference/sansio/server). It runs without
    extensions: the session compresses and inflates permessage-deflate messages itself
    (deflate.py), so nothing negotiated on the handshake checker has to be handed over."""
    return ServerProtocol(state=State.OPEN, max_size=max_size)


def release(protocol: ServerProtocol) -> None:
    """websockets' parser generator holds its protocol: closing it ends that reference cycle, so
    reference counting frees the protocol at once."""
    protocol.parser.close()


def set_message_size(protocol: ServerProtocol, size: int | None) -> None:
    """Keep websockets' count of the fragmented message in progress (None: none is) for the
    fragments session._read_frames takes itself: websockets checks the next frame, and the size
    limit, against it. (Read in the session as ``protocol.current_size``.) Not public: the only
    public way to tell websockets of a fragment is to have it parse the fragment, which is what
    the session's own framing is there to avoid; writing the count keeps websockets' rules (a
    data frame inside a fragmented message, a stray continuation, the size of the whole message)
    in one place instead of copying them."""
    protocol.current_size = size
