"""Back-pressure in both directions for one connection."""

from __future__ import annotations

import asyncio

# Why reading is paused: each reason is set and cleared by its own owner, and reading resumes only
# once no reason is left (so the app taking its body cannot undo a pause for pipelined requests).
BODY = 1  # request body buffered that the app has not taken yet (the cycle)
BACKLOG = 2  # pipelined requests, or bytes not fed to the parser yet, wait for responses ahead
PARSER = 4  # the parser holds unparsed bytes it cannot parse before our response (h11)
# A WebSocket session's reasons (its own FlowControl, over its carrier); it uses BACKLOG too, for
# received frames not parsed yet (after FRAME_BUDGET frames in one turn, or while held back).
QUEUE_FULL = 8  # messages the app has not taken reached --ws-max-queue or --ws-max-queue-size
WRITES_BLOCKED = 16  # the client does not read what we write (pongs to a ping flood): not read either
NOT_ACCEPTED = 32  # bytes sent before the app accepted reached --ws-max-queue-size
PARSING = 64  # a backlog is being parsed: the carrier stays paused until that is over
# Past this many bytes held unparsed for pipelined requests, reading pauses (the mark at which a
# request body buffered for the app pauses reading too: cycle.BODY_HIGH_WATER).
PIPELINE_HIGH_WATER = 64 * 1024


class FlowControl:
    """Reading pauses when the app falls behind; ``send()`` waits while the socket's buffer is full."""

    __slots__ = ("_transport", "read_paused", "write_paused", "_drain_waiter")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = 0  # the reasons reading is paused for (falsy when reading)
        self.write_paused = False
        self._drain_waiter: asyncio.Future | None = None

    def pause_reading(self, reason: int = BODY) -> None:
        if not self.read_paused:
            self._transport.pause_reading()
        self.read_paused |= reason

    def resume_reading(self, reason: int = BODY) -> None:
        if self.read_paused & reason:
            self.read_paused &= ~reason
            if not self.read_paused:
                self._transport.resume_reading()

    # Called by the protocol's pause_writing/resume_writing.
    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writer()

    def connection_lost(self) -> None:
        self.write_paused = False
        if self._drain_waiter is not None:  # (once per connection: most never waited)
            self._wake_writer()

    async def drain(self) -> None:
        if self._drain_waiter is None:
            self._drain_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drain_waiter)

    async def writable(self, fd: int) -> None:
        """Wait until socket ``fd`` can take more bytes, or the connection is lost: for writes that
        bypass the transport (sendfile, on a duplicate of its socket: see http1/filesend.py)."""
        loop = asyncio.get_running_loop()
        if self._drain_waiter is None:
            self._drain_waiter = loop.create_future()
        loop.add_writer(fd, self._wake_writer)
        try:
            await asyncio.shield(self._drain_waiter)
        finally:
            loop.remove_writer(fd)

    def _wake_writer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        wake(waiter)


def wake(waiter: asyncio.Future | None) -> None:
    """Resolve a waiter future, if there is one still waiting."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
