"""The WebSocket carrier over HTTP/1.1: the TCP connection after the upgrade.

It becomes the transport's asyncio Protocol when the HTTP side hands the connection over, passes
the transport's callbacks on to the session (``feed``, ``feed_eof``, ``lost``, ...), and renders
the session's decisions as HTTP/1.1: the accept as a 101 response, refusals and the app's denial
as responses that close the connection, frames as they are.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..http1.render import CONNECTION_CLOSE, simple_response, status_line


class UpgradedTransport(asyncio.Protocol):
    __slots__ = ("transport", "session", "data_received")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.session: Any = None

    def attach(self, session: Any) -> None:
        """Take over the transport for ``session``: from now on its callbacks come here."""
        self.session = session
        # The transport calls the session's feed() itself: nothing in between on the path every
        # frame takes (a forwarding method cost ~390 instructions a read, callgrind, 1.3%).
        self.data_received = session.feed  # type: ignore[method-assign]
        transport = self.transport
        transport.set_protocol(self)
        if not transport.is_reading():
            transport.resume_reading()

    # -- asyncio callbacks, passed on to the session (data_received: see attach) -----------------
    def eof_received(self) -> bool:
        self.session.feed_eof()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        # The last callback: letting go of the session ends the reference cycle with it, so
        # reference counting frees both at once.
        session, self.session = self.session, None
        del self.data_received
        session.lost(exc)

    def pause_writing(self) -> None:
        self.session.pause_writing()

    def resume_writing(self) -> None:
        self.session.resume_writing()

    # -- the WebSocketCarrier contract ----------------------------------------------------------
    def accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.transport.write(status_line(101) + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n")

    def deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        block = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        if not any(name.lower() == b"content-length" for name, _ in headers):
            block += b"content-length: %d\r\n" % len(body)
        self.transport.write(status_line(status) + block + CONNECTION_CLOSE + b"\r\n" + body)
        self.transport.close()

    def refuse(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006  # never changed
        extra = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(simple_response(status, reason, extra))
        self.transport.close()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def end(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)  # (the socket: see asgi.flow.unsent)
