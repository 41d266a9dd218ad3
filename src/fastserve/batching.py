"""Holding small writes to the end of the event-loop iteration, so several connections' responses
wake a local reader once (used by the HTTP connection classes; the only code here that touches a
transport besides the connections themselves)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol

# What a writer takes: a response body part as the app gave it (ASGI says bytes; bytearray and
# memoryview are taken as well, as transports take them), or the bytes rendered around it.
Buffer = bytes | bytearray | memoryview

# Writes up to this size are held until the end of the event-loop iteration (larger ones go out
# at once, after whatever the connection holds).
HOLD_LIMIT = 16 * 1024
TCP_CORK = getattr(socket, "TCP_CORK", None)  # Linux only (see HeldWriter.close_with_fin)


class Held(Protocol):
    """What holds output for the WriteBatch: a HeldWriter, or an HTTP/2 connection (its codec)."""

    def release(self) -> None: ...


class WriteBatch:
    """The connections holding a write in this event-loop iteration; flushed together at its end.

    Writing each response as soon as it is ready spreads the writes of one iteration out by the
    app's time per request, so on a local socket (benchmarks, a proxy on the same host) every
    write finds the reader asleep and pays for waking it. Written back to back at the end of the
    iteration, they wake it once for several.
    """

    __slots__ = ("writers", "call_soon")

    def __init__(self) -> None:
        self.writers: list[Held] = []
        # The loop's call_soon, taken on first use: on Python 3.11 asyncio.get_running_loop()
        # makes a getpid() system call, ~6 % of the server's time on a Connection: close load
        # (py-spy), where most loop iterations flush one response.
        self.call_soon: Any = None

    def add(self, writer: Held) -> None:
        if not self.writers:
            call_soon = self.call_soon
            if call_soon is None:
                call_soon = self.call_soon = asyncio.get_running_loop().call_soon
            call_soon(self.flush)
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
        self.held: Buffer | None = None
        self.batch = batch

    def write(self, data: Buffer) -> None:
        held = self.held
        if held is not None:
            self.held = None
            self.transport.writelines((held, data))
        elif len(data) <= HOLD_LIMIT:
            self.held = data
            self.batch.add(self)
        else:
            self.transport.write(data)

    def write_now(self, data: Buffer) -> None:
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

    def close_with_fin(self) -> None:
        """close(), with the response held and the FIN in one TCP segment rather than two.

        TCP_CORK keeps the write in the kernel until the close, which tacks the FIN onto it and
        sends both. For a connection whose client asked for the close only: a close with unread
        input resets the connection, and a corked response would then never leave (uncorked,
        it left at the write). A packet less each way per connection: on a Connection: close
        hello-world load, 11-19 µs less system time per request in every interleaved pair, CPU
        per request -18 % (median; benchmarks/RESULTS.md, 2026-12-02)."""
        if self.held is not None and TCP_CORK is not None:
            try:
                sock = self.transport.get_extra_info("socket")  # (uvloop asks the socket its name)
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, TCP_CORK, 1)
            except OSError:
                pass  # not a TCP socket after all (a PROXY header on a UNIX socket), or gone: two segments
        self.close()

    def discard(self) -> None:
        self.held = None  # the connection is gone: nowhere to send it

    def abort(self) -> None:
        self.discard()
        self.transport.abort()
