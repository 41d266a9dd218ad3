"""Back-pressure in both directions for one connection."""

from __future__ import annotations

import asyncio

# Why reading is paused: each reason is set and cleared by its own owner, and reading resumes only
# once no reason is left (so the app taking its body cannot undo a pause for pipelined requests).
BODY = 1  # request body buffered that the app has not taken yet (the cycle)
BACKLOG = 2  # pipelined requests, or bytes not fed to the parser yet, wait for responses ahead
PARSER = 4  # the parser holds unparsed bytes it cannot parse before our response (h11)
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


# Writes up to this size are held until the end of the event-loop iteration (larger ones go out
# at once, after whatever the connection holds).
HOLD_LIMIT = 16 * 1024


class WriteBatch:
    """The connections holding a write in this event-loop iteration; flushed together at its end.

    Writing each response as soon as it is ready spreads the writes of one iteration out by the
    app's time per request, so on a local socket (benchmarks, a proxy on the same host) every
    write finds the reader asleep and pays for waking it. Written back to back at the end of the
    iteration, they wake it once for several.
    """

    __slots__ = ("writers",)

    def __init__(self) -> None:
        self.writers: list[HeldWriter] = []

    def add(self, writer: HeldWriter) -> None:
        if not self.writers:
            asyncio.get_running_loop().call_soon(self.flush)
        self.writers.append(writer)

    def flush(self) -> None:
        writers, self.writers = self.writers, []
        for writer in writers:
            writer.release()


class HeldWriter:
    """The transport as the HTTP side writes to it: a small write is held for the WriteBatch; any
    later write, close or the batch's flush sends it first, so order is kept.

    Only a write the app cannot see the absence of may be held: one that completes a response
    (the app is done with it). ASGI has ``send()`` flush to the transport before it returns, and an
    app streaming a body may block right after a chunk, so chunks, 100 Continue and anything else
    the app waits on go through ``write_now()``.
    """

    __slots__ = ("transport", "held", "batch")

    def __init__(self, transport: asyncio.Transport, batch: WriteBatch) -> None:
        self.transport = transport
        self.held: bytes | None = None
        self.batch = batch

    def write(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            self.held = None
            self.transport.writelines((held, data))
        elif len(data) <= HOLD_LIMIT:
            self.held = data
            self.batch.add(self)
        else:
            self.transport.write(data)

    def write_now(self, data: bytes) -> None:
        """Write to the transport before returning (after what is held, in one call)."""
        held = self.held
        if held is not None:
            self.held = None
            self.transport.writelines((held, data))
        else:
            self.transport.write(data)

    def writelines(self, items) -> None:
        self.release()
        self.transport.writelines(items)

    def release(self) -> None:
        held = self.held
        if held is not None:
            self.held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.release()
        self.transport.close()

    def discard(self) -> None:
        self.held = None  # the connection is gone: nowhere to send it

    def abort(self) -> None:
        self.discard()
        self.transport.abort()
