"""A file's bytes onto an HTTP/1.1 connection, for the pathsend and zerocopysend extensions.

On a plain socket (TCP or unix) the kernel copies them: ``os.sendfile`` on a duplicate of the
transport's socket, once everything the transport holds is on the wire (the bytes must follow the
response head, never overtake it). Over TLS, or when the kernel cannot sendfile from that file,
they are read in READ_CHUNK pieces and written through the transport under its back-pressure.
Either way memory stays bounded whatever the file's size, and the loop serves other connections
between two pieces.

Why a duplicate of the socket's descriptor: waiting until the socket can take more (``add_writer``)
is not allowed on a descriptor a transport owns, and if the transport closes under us (a reset, a
shutdown's abort) its descriptor number may be reused at once by another connection; ours stays
this socket's until we close it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from typing import Any

from ..asgi.errors import ClientDisconnected, FileEnded

logger = logging.getLogger("fastserve.error")

# Bytes read per piece when the kernel cannot do the copy (TLS): the memory one transfer holds,
# besides the transport's buffer (which pauses the writer at its high-water mark).
READ_CHUNK = 64 * 1024
# At most this much per sendfile call: one call copies from the page cache while the loop waits,
# and a fast local reader could otherwise take gigabytes in one go.
SENDFILE_CHUNK = 4 * 1024 * 1024
# Unsent bytes a TCP socket may queue during a sendfile transfer (TCP_NOTSENT_LOWAT); past that,
# sendfile stops and the socket is not writable. Without it the kernel queues a whole send buffer
# (megabytes) and sends most of it later from the peer's ACKs, on whichever CPU handles them: on
# loopback, the client's. With it each sendfile sends what it queued at once, on the server's CPU;
# a local 10 MiB download ran 1.3-1.5x faster (benchmarks/RESULTS.md).
SENDFILE_NOTSENT_LOWAT = 512 * 1024
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)
# The kernel refuses sendfile from this file (or to this socket): read it instead.
_NO_SENDFILE = frozenset((errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSOCK, errno.EOVERFLOW))


async def send_file_bytes(out: Any, flow: Any, fd: int, offset: int, count: int) -> None:
    """Write ``count`` bytes of ``fd`` from ``offset`` after whatever ``out`` (the connection's
    HeldWriter) has already been given. Returns once they are handed to the kernel; raises
    ClientDisconnected if the connection ends first, FileEnded if the file is shorter."""
    transport = out.transport
    sock = transport.get_extra_info("socket")
    if sock is None or transport.get_extra_info("sslcontext") is not None:
        await _copy_by_reads(out, flow, fd, offset, count)
        return
    out.release()
    if transport.is_closing():
        raise ClientDisconnected("the client closed the connection")
    try:
        dup = os.dup(sock.fileno())
    except OSError as exc:  # out of descriptors: the slow way still works
        logger.debug("No descriptor for sendfile (%s): reading the file instead", exc)
        await _copy_by_reads(out, flow, fd, offset, count)
        return
    paced = _limit_unsent(sock, dup)
    try:
        sent = await _sendfile(transport, flow, dup, fd, offset, count)
    finally:
        if paced is not None:
            _restore_unsent(paced)
        os.close(dup)
    if sent < count:  # the kernel would not: the rest goes the slow way
        await _copy_by_reads(out, flow, fd, offset + sent, count - sent)


def _limit_unsent(sock: Any, dup: int) -> tuple[socket.socket, int] | None:
    """Set SENDFILE_NOTSENT_LOWAT on a TCP socket, through a socket object on our duplicate (the
    transport's descriptor number may be reused once it closes); returns what restores it."""
    if sock.family not in _TCP_FAMILIES or not hasattr(socket, "TCP_NOTSENT_LOWAT"):
        return None
    try:
        copy = socket.socket(sock.family, socket.SOCK_STREAM, 0, fileno=dup)
    except OSError:
        return None
    try:
        before = copy.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
        copy.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, SENDFILE_NOTSENT_LOWAT)
    except OSError:  # not settable here: send unpaced
        copy.detach()
        return None
    return copy, before


def _restore_unsent(paced: tuple[socket.socket, int]) -> None:
    """Back to the connection's own setting (0: the system's), so later responses through the
    transport queue in the kernel as before; the socket object lets go of, not closes, the fd."""
    copy, before = paced
    try:
        copy.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, before)
    except OSError:  # the connection is gone: nothing to restore
        pass
    finally:
        copy.detach()


async def _sendfile(transport: Any, flow: Any, sock_fd: int, fd: int, offset: int, count: int) -> int:
    """Bytes sent with os.sendfile; fewer than ``count`` only if the kernel refused the first call."""
    while transport.get_write_buffer_size():  # the head, or earlier bytes, still in the transport
        await _writable(transport, flow, sock_fd)
    sent = 0
    while sent < count:
        if transport.is_closing():
            raise ClientDisconnected("the client closed the connection")
        try:
            done = os.sendfile(sock_fd, fd, offset + sent, min(count - sent, SENDFILE_CHUNK))
        except BlockingIOError:
            done = -1
        except (BrokenPipeError, ConnectionError) as exc:
            raise ClientDisconnected("the client closed the connection") from exc
        except OSError as exc:
            if sent == 0 and exc.errno in _NO_SENDFILE:
                logger.debug("sendfile refused (%s): reading the file instead", exc)
                return 0
            raise
        if done == 0:
            raise FileEnded(f"the file ended {count - sent} bytes early")
        if done > 0:
            sent += done
            if sent == count:
                break
        # Socket full, or a piece sent: either way the loop serves others before the next one.
        await _writable(transport, flow, sock_fd)
    return sent


async def _writable(transport: Any, flow: Any, sock_fd: int) -> None:
    await flow.writable(sock_fd)
    if transport.is_closing():
        raise ClientDisconnected("the client closed the connection")


async def _copy_by_reads(out: Any, flow: Any, fd: int, offset: int, count: int) -> None:
    transport = out.transport
    while count:
        if flow.write_paused:
            await flow.drain()
        if transport.is_closing():
            raise ClientDisconnected("the client closed the connection")
        data = os.pread(fd, min(count, READ_CHUNK), offset)
        if not data:
            raise FileEnded(f"the file ended {count} bytes early")
        out.write_now(data)
        offset += len(data)
        count -= len(data)
        if count and not flow.write_paused:
            await asyncio.sleep(0)  # a fast reader must not keep the loop to itself
