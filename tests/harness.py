"""In-process test harness: a real HTTPProtocol on a real event loop, with a fake transport.

No sockets: bytes go in through ``FakeTransport.feed()`` (the protocol's ``data_received``), and
every write, close, pause and resume the server makes is recorded on the transport. The protocol
is built as ``server.py``'s factory builds it: a real ``Config``, a real ``ServerState`` (with the
WebSocket handler ``upgrade_handler`` gives), the parser adapter ``parser_class`` picks.

    async def scenario(conn):
        conn.feed(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        await conn.settle()
        [response] = conn.responses()

    run_on("uvloop", scenario_factory)  # or the `inprocess` fixtures of the in-process suites

``settle()`` runs the loop until nothing more happens on the transport; timers (keep-alive,
timeouts, an app's ``asyncio.sleep``) fire only if the test waits for them with ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastserve.config import Config
from fastserve.http1 import parser_class
from fastserve.http1.connection import HTTPProtocol
from fastserve.server import ServerState, loop_factory
from fastserve.websocket import upgrade_handler

PARSERS = ("httptools", "h11")
LOOPS = ("asyncio", "uvloop")
PEER = ("127.0.0.1", 50000)
SOCKNAME = ("127.0.0.1", 8000)


class FakeTransport(asyncio.Transport):
    """A socket transport without the socket: records what the protocol does to it.

    ``close()`` and ``abort()`` call ``connection_lost`` on the next loop iteration, as asyncio's
    transports do. Bytes written after ``close()`` or ``abort()`` are kept apart in ``late``: a real
    transport would drop them (or send them after the close was asked for), so tests assert it is
    empty. ``pause_writing()``/``resume_writing()`` simulate a full and a drained socket buffer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, peername: Any = PEER, sockname: Any = SOCKNAME,
                 sslcontext: Any = None) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: asyncio.BaseProtocol | None = None
        self.writes: list[bytes] = []
        self.late: list[bytes] = []
        self.events: list[str] = []  # pause_reading, resume_reading, close, abort, write_eof, ...
        self.reading = True
        self.closing = False
        self.aborted = False
        self.eof_written = False
        self.lost = False
        self.write_buffer_size = 0  # what get_write_buffer_size() reports (set by a test)
        self.extra = {"peername": peername, "sockname": sockname, "sslcontext": sslcontext}

    # -- what the protocol calls --------------------------------------------------------------
    def write(self, data: bytes) -> None:
        data = bytes(data)
        if self.closing:
            self.late.append(data)
        else:
            self.writes.append(data)

    def writelines(self, list_of_data) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self.events.append("write_eof")
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if self.closing:
            return
        self.events.append("close")
        self.closing = True
        self.loop.call_soon(self._lose, None)

    def abort(self) -> None:
        self.events.append("abort")
        self.aborted = True
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self._lose, None)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.events.append("pause_reading")
        self.reading = False

    def resume_reading(self) -> None:
        self.events.append("resume_reading")
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading and not self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.events.append("set_protocol")
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return self.write_buffer_size

    # -- what the test calls ------------------------------------------------------------------
    @property
    def data(self) -> bytes:
        return b"".join(self.writes)

    def take(self) -> bytes:
        """The bytes written since the last take()."""
        data = self.data
        self.writes.clear()
        return data

    def feed(self, data: bytes) -> None:
        """Bytes from the peer; ignored once the transport is closing (a real one stops reading)."""
        if not self.closing:
            self.protocol.data_received(data)

    def feed_eof(self) -> None:
        """The peer half-closed; the transport closes unless the protocol keeps it open."""
        if self.closing:
            return
        if not self.protocol.eof_received():
            self.close()

    def disconnect(self, exc: Exception | None = None) -> None:
        """The peer went away (a reset): connection_lost at once."""
        if not self.lost:
            self.closing = True
            self._lose(exc)

    def fill_write_buffer(self) -> None:
        """The socket buffer is above its high-water mark."""
        self.protocol.pause_writing()

    def drain_write_buffer(self) -> None:
        self.protocol.resume_writing()

    def _lose(self, exc: Exception | None) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(exc)

    def mark(self) -> int:
        """A cheap fingerprint of everything recorded so far (settle() waits for it to stop)."""
        return len(self.writes) + len(self.late) + len(self.events) + self.lost


# -- HTTP responses ----------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    complete: bool = True  # False: the bytes ended before the framing said the body ends
    chunked: bool = False
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        values = self.headers_named(name)
        return values[0] if values else None

    def headers_named(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def closes(self) -> bool:
        value = self.header(b"connection")
        return value is not None and b"close" in value.lower()


def parse_responses(data: bytes, head_requests: set[int] | None = None) -> list[Response]:
    """Split what the server wrote into responses (1xx included, each its own entry).

    ``head_requests``: indexes of the final responses that answer a HEAD (no body whatever the
    headers say). A response without content-length or chunked runs to the end of ``data``.
    """
    head_requests = head_requests or set()
    responses: list[Response] = []
    final_index = 0
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            raise AssertionError(f"incomplete response head: {data[pos:pos + 200]!r}")
        lines = data[pos:end].split(b"\r\n")
        version, status, reason = (lines[0].split(b" ", 2) + [b""])[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise AssertionError(f"not a status line: {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise AssertionError(f"not a header line: {line!r}")
            headers.append((name.lower(), value.strip(b" \t")))
        response = Response(int(status), reason, headers)
        responses.append(response)
        pos = end + 4
        if response.status < 200:
            continue
        is_head = final_index in head_requests
        final_index += 1
        if is_head or response.status in (204, 304):
            continue
        length = response.header(b"content-length")
        encoding = response.header(b"transfer-encoding")
        if encoding is not None and encoding.lower() == b"chunked":
            response.chunked = True
            pos = _read_chunked(data, pos, response)
        elif length is not None:
            size = int(length)
            response.body = data[pos : pos + size]
            response.complete = len(response.body) == size
            pos += size
        else:
            response.body = data[pos:]
            pos = len(data)
    return responses


def _read_chunked(data: bytes, pos: int, response: Response) -> int:
    body = []
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            response.complete = False
            break
        size = int(data[pos:line_end].split(b";")[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n", pos)
            while trailer_end > pos:  # trailer fields
                name, _, value = data[pos:trailer_end].partition(b":")
                response.trailers.append((name.lower(), value.strip()))
                pos = trailer_end + 2
                trailer_end = data.find(b"\r\n", pos)
            if trailer_end < 0:
                response.complete = False
                break
            pos = trailer_end + 2
            break
        if pos + size + 2 > len(data):
            body.append(data[pos : pos + size])
            response.complete = False
            pos = len(data)
            break
        body.append(data[pos : pos + size])
        pos += size + 2
    response.body = b"".join(body)
    return pos


# -- a connection ------------------------------------------------------------------------------
class Connection:
    """One HTTPProtocol with its FakeTransport, on the running loop."""

    def __init__(self, app: Any, http: str = "httptools", *, transport_extra: dict | None = None, **options: Any) -> None:
        self.loop = asyncio.get_running_loop()
        config = Config(app="tests.harness:unused", http=http, **options)
        self.config = config
        self.state = ServerState(config, {}, None, upgrade_handler(config, app))
        # As server.py's factory builds it.
        self.protocol = HTTPProtocol(config, app, self.state, parser_class(config.http), self.loop)
        self.transport = FakeTransport(self.loop, **(transport_extra or {}))
        self.transport.set_protocol(self.protocol)
        self.transport.events.clear()
        self.protocol.connection_made(self.transport)

    def feed(self, data: bytes) -> None:
        self.transport.feed(data)

    def feed_eof(self) -> None:
        self.transport.feed_eof()

    async def settle(self, idle_iterations: int = 10, limit: int = 2000) -> None:
        """Run the loop until nothing new has happened on the transport for ``idle_iterations``
        iterations (work chained with call_soon, task steps, held writes flushed)."""
        await settle(self.transport, idle_iterations, limit)

    async def request(self, data: bytes, head_requests: set[int] | None = None) -> list[Response]:
        """Feed ``data``, settle, and parse what was written since the last call."""
        self.feed(data)
        await self.settle()
        return parse_responses(self.transport.take(), head_requests)

    def responses(self, head_requests: set[int] | None = None) -> list[Response]:
        return parse_responses(self.transport.data, head_requests)

    @property
    def closed(self) -> bool:
        return self.transport.closing

    @property
    def ended(self) -> bool:
        """The server has ended its side: closed, or shut its write side for a lingering close
        (after a refusal it reads and drops input for a while so the client gets the answer)."""
        return self.transport.closing or self.transport.eof_written

    @property
    def session(self) -> Any:
        """The WebSocket session after an upgrade (carried by the transport's protocol)."""
        protocol = self.transport.protocol
        return getattr(protocol, "session", protocol)


async def settle(transport: FakeTransport, idle_iterations: int = 10, limit: int = 2000) -> None:
    mark, idle = transport.mark(), 0
    for _ in range(limit):
        await asyncio.sleep(0)
        current = transport.mark()
        if current == mark:
            idle += 1
            if idle >= idle_iterations:
                return
        else:
            mark, idle = current, 0


# Every parser with every loop: what the in-process suites are parametrized over.
IMPLS = [(http, loop) for http in PARSERS for loop in LOOPS]
IMPL_IDS = [f"{http}-{loop}" for http, loop in IMPLS]


def connection_runner(http: str, loop_name: str) -> Callable[..., Any]:
    """run(app, scenario, **config options): ``scenario(conn)`` runs against a fresh Connection
    with this parser, on a fresh loop of this kind (the in-process suites' ``run`` fixture)."""

    def run(app: Any, scenario: Callable[[Connection], Awaitable[Any]], **options: Any) -> Any:
        async def main() -> Any:
            return await scenario(Connection(app, http, **options))

        return run_on(loop_name, main)

    return run


def run_on(loop_name: str, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main()`` on a fresh loop of that kind (asyncio or uvloop)."""
    loop = loop_factory(loop_name)()
    try:
        return loop.run_until_complete(main())
    finally:
        _cancel_tasks(loop)  # apps still waiting (for a disconnect, a gate), as asyncio.run does
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _cancel_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


# -- WebSocket frames --------------------------------------------------------------------------
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(path: bytes = b"/ws", extra: bytes = b"") -> bytes:
    return (b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (path, WS_KEY, extra))


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bytes | None = None,
                 masked: bool = True, length: int | None = None, width: int | None = None) -> bytes:
    """A client frame; ``mask`` fixed for reproducible bytes (random when None), ``length`` to
    declare a length other than the payload's, ``width`` (16 or 64) for a non-minimal length."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if masked else 0
    if n < 126 and width is None:
        head += bytes([bit | n])
    elif n < 65536 and width != 64:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4) if mask is None else mask
    return head + mask + _apply_mask(payload, mask)


def _apply_mask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return b""
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def server_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    """(opcode, fin, payload) of each server frame in ``data``; servers never mask."""
    frames = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        assert not second & 0x80, "a server frame is masked"
        n = second & 0x7F
        pos += 2
        if n == 126:
            n = struct.unpack("!H", data[pos : pos + 2])[0]
            pos += 2
        elif n == 127:
            n = struct.unpack("!Q", data[pos : pos + 8])[0]
            pos += 8
        assert pos + n <= len(data), "a server frame is cut short"
        frames.append((first & 0x0F, bool(first & 0x80), data[pos : pos + n]))
        pos += n
    return frames


def split_handshake(data: bytes) -> tuple[bytes, bytes]:
    """The HTTP response head (101 or a refusal) and the frame bytes after it."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data[:200]!r}"
    return head, rest


def upgrade_head(path, raw_path, query_string, headers, http_version, client, scheme):
    """A parsed upgrade request as the HTTP/1.1 side hands it to the WebSocket side."""
    from fastserve.asgi.request import RequestHead

    head = RequestHead()
    head.path, head.raw_path, head.query_string, head.headers = path, raw_path, query_string, headers
    head.http_version, head.client, head.scheme = http_version, client, scheme
    return head
