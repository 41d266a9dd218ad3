"""permessage-deflate (RFC 7692) for one WebSocket connection, on zlib.

websockets negotiates the extension in the handshake (``accept()``, or ``process_extensions()``
over HTTP/2); the session then compresses and inflates messages itself with the parameters of the
answer (its Sec-WebSocket-Extensions value), so that websockets' protocol runs without extensions
and compressed messages take the session's own framing instead of websockets' frame parser, its
extension's decode and encode, and its serializer (most of the Python a compressed message cost).
"""

from __future__ import annotations

import zlib
from typing import Any

_SYNC_TAIL = b"\x00\x00\xff\xff"  # what ends a sync flush; RFC 7692 7.2.1 removes it from messages
_MEMORY_LEVEL = 5  # websockets' default (its "Compression" guide), as before


class TooBig(Exception):
    """Inflating a message would take it past the size limit."""


def agreed_params(answer: str | None) -> dict[str, str | None] | None:
    """The permessage-deflate parameters of the server's Sec-WebSocket-Extensions answer, or None
    when it did not agree to the extension (websockets writes the answer: one extension, unquoted
    values, e.g. ``permessage-deflate; server_max_window_bits=12; client_max_window_bits=12``)."""
    if answer is None:
        return None
    name, *params = (part.strip() for part in answer.split(";"))
    if name != "permessage-deflate":
        return None
    agreed: dict[str, str | None] = {}
    for param in params:
        key, _, value = param.partition("=")
        agreed[key.strip()] = value.strip().strip('"') or None
    return agreed


class MessageDeflate:
    """The compression contexts of one connection: the client's messages are inflated with the
    window it agreed to, ours compressed at ``level``; each context is kept from message to
    message unless the answer says ``*_no_context_takeover``. zlib objects are made on first use:
    a connection that sends nothing compressed holds no inflate window."""

    __slots__ = ("inflate_bits", "inflate_takeover", "inflater", "deflate_bits", "deflate_takeover", "deflater", "level")

    def __init__(self, params: dict[str, Any], level: int) -> None:
        self.inflate_bits = int(params.get("client_max_window_bits") or 15)
        self.inflate_takeover = "client_no_context_takeover" not in params
        self.inflater: Any = None
        self.deflate_bits = int(params.get("server_max_window_bits") or 15)
        self.deflate_takeover = "server_no_context_takeover" not in params
        self.deflater: Any = None
        self.level = level

    def inflate(self, data: bytes, fin: bool, limit: int) -> bytes:
        """One frame's payload of a compressed message, inflated to at most ``limit`` bytes.
        Raises TooBig past it (a deflate bomb stops there), zlib.error for corrupt data."""
        inflater = self.inflater
        if inflater is None:
            inflater = self.inflater = zlib.decompressobj(-self.inflate_bits)
        if fin:
            data += _SYNC_TAIL
        # One byte more than allowed: more output than that means too big; less means zlib ran
        # out of input, so nothing of this message is left inside it.
        inflated = inflater.decompress(data, limit + 1)
        if len(inflated) > limit:
            raise TooBig
        if inflater.eof:
            # The client ended its DEFLATE stream (a block with BFINAL set, which RFC 7692 allows):
            # its next message starts a new one. Left in place, zlib would keep every later byte
            # as unused_data, without end.
            if len(inflater.unused_data) > (len(_SYNC_TAIL) if fin else 0):
                raise zlib.error("data after the end of the DEFLATE stream")
            self.inflater = None
        elif fin and not self.inflate_takeover:
            self.inflater = None
        return inflated

    def compress(self, data: bytes) -> bytes:
        """A whole message's compressed payload."""
        deflater = self.deflater
        if deflater is None:
            deflater = self.deflater = zlib.compressobj(self.level, zlib.DEFLATED, -self.deflate_bits, _MEMORY_LEVEL)
        compressed = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        if not self.deflate_takeover:
            self.deflater = None
        return compressed[:-4]  # a sync flush always ends with the tail
