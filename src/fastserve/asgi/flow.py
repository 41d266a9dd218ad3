"""Back-pressure in both directions for one connection."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

try:
    import termios
    from fcntl import ioctl

    # Linux's SIOCOUTQ on a socket: its send queue, in bytes.
    SEND_QUEUE: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # not on this platform: the transport's buffer alone measures progress
    SEND_QUEUE = None

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
    """Reading pauses when the app falls behind; ``send()`` waits while the socket's buffer is full.

    With a ``write_timeout``, a client that stops reading is not waited for forever: once writing
    has been blocked (paused, or a ``writable()`` wait) that long without what the client has not
    read shrinking, ``on_write_timeout`` is called (the owner logs and aborts). One timer, armed
    when writing blocks and cancelled when it resumes: nothing per write. Progress, not the pause,
    is what counts (nginx's send_timeout): a slow reader of one large write stays paused for long,
    yet reads. What it has not read is the transport's buffer plus the kernel's send queue (see
    unsent()): a slow reader empties a send queue of megabytes for seconds before the transport
    can write again."""

    __slots__ = (
        "_transport",
        "read_paused",
        "write_paused",
        "_drain_waiter",
        "write_timeout",
        "_on_write_timeout",
        "_write_timer",
        "_unsent",
    )

    def __init__(
        self, transport: asyncio.Transport, write_timeout: float = 0.0, on_write_timeout: Callable[[], None] | None = None
    ) -> None:
        self._transport = transport
        self.read_paused = 0  # the reasons reading is paused for (falsy when reading)
        self.write_paused = False
        self._drain_waiter: asyncio.Future | None = None
        self.write_timeout = write_timeout  # 0: no timer (on_write_timeout is then never called)
        self._on_write_timeout = on_write_timeout
        self._write_timer: asyncio.TimerHandle | None = None
        # (and _unsent: unsent() when the timer was armed; set before it is read, once per connection at most)

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
        if self.write_timeout:
            self._watch_writes()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.stop_write_timer()
        self._wake_writer()

    def connection_lost(self) -> None:
        self.write_paused = False
        if self._write_timer is not None:  # (no call when none: this runs for every connection)
            self.stop_write_timer()
        # The callback is the owner's bound method, and the owner holds us: let go of it, so that
        # reference counting frees the connection as it closes (not the cyclic GC).
        self._on_write_timeout = None
        if self._drain_waiter is not None:  # (once per connection: most never waited)
            self._wake_writer()

    async def drain(self) -> None:
        if self._drain_waiter is None:
            self._drain_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drain_waiter)

    async def writable(self, fd: int) -> None:
        """Wait until socket ``fd`` can take more bytes, or the connection is lost: for writes that
        bypass the transport (sendfile, on a duplicate of its socket: see http1/filesend.py). The
        write timeout runs while it waits (the transport never pauses for these writes)."""
        loop = asyncio.get_running_loop()
        if self._drain_waiter is None:
            self._drain_waiter = loop.create_future()
        loop.add_writer(fd, self._wake_writer)
        if self.write_timeout:
            self._watch_writes()
        try:
            await asyncio.shield(self._drain_waiter)
        finally:
            loop.remove_writer(fd)
            if not self.write_paused:
                self.stop_write_timer()

    def stop_write_timer(self) -> None:
        """Writing resumed, or the connection is gone."""
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def hand_over(self) -> None:
        """Another protocol has taken the transport and watches its writes: no timer here any more
        (``write_paused`` stays, for the new protocol to start from); see connection_lost."""
        self.stop_write_timer()
        self.write_timeout = 0.0
        self._on_write_timeout = None

    def _watch_writes(self) -> None:
        if self._write_timer is None:
            self._arm_write_timer(unsent(self._transport))

    def _arm_write_timer(self, unsent_now: int) -> None:
        self._unsent = unsent_now
        self._write_timer = asyncio.get_running_loop().call_later(self.write_timeout, self._write_timer_fired)

    def _write_timer_fired(self) -> None:
        self._write_timer = None
        left = unsent(self._transport)
        if left < self._unsent:  # the client reads, slowly: watched for another period
            self._arm_write_timer(left)
            return
        self._on_write_timeout()  # type: ignore[misc]  # (set whenever the timer is armed)

    def _wake_writer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        wake(waiter)


def unsent(transport: Any) -> int:
    """Bytes written that the peer has not taken yet, as far as we can tell: the transport's (or
    carrier's) buffer, plus its socket's send queue where the kernel says (not sent, or not
    acknowledged). Called once per --timeout-write period of blocked writing, never per write."""
    size = transport.get_write_buffer_size()
    queue_request = SEND_QUEUE  # (the ioctl request, where the platform has one)
    get_extra_info = getattr(transport, "get_extra_info", None)  # (an HTTP/2 stream has no socket)
    if queue_request is None or get_extra_info is None:
        return size
    sock = get_extra_info("socket")
    if sock is not None:
        try:
            size += struct.unpack("i", ioctl(sock.fileno(), queue_request, b"\0\0\0\0"))[0]
        except (OSError, ValueError):  # closed meanwhile, or not a socket the kernel says this of
            pass
    return size


def wake(waiter: asyncio.Future | None) -> None:
    """Resolve a waiter future, if there is one still waiting."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
