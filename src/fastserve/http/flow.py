"""Back-pressure in both directions for one connection."""

from __future__ import annotations

import asyncio


class FlowControl:
    """Reading pauses when the app falls behind; ``send()`` waits while the socket's buffer is full."""

    __slots__ = ("_transport", "read_paused", "write_paused", "_drain_waiter")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future | None = None

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    # Called by the protocol's pause_writing/resume_writing.
    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writer()

    def connection_lost(self) -> None:
        self.write_paused = False
        self._wake_writer()

    async def drain(self) -> None:
        if self._drain_waiter is None:
            self._drain_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drain_waiter)

    def _wake_writer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        wake(waiter)


def wake(waiter: asyncio.Future | None) -> None:
    """Resolve a waiter future, if there is one still waiting."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
