"""The in-process WebSocket hot path: µs per echoed message through WebSocketSession.

    python -m benchmarks.ws_hotpath [--deflate] [MESSAGES [REPEAT]]

No sockets and no HTTP parser: the real session (built as websocket.upgrade_handler builds it,
real Config and ServerState, no access log), an echo app, and a carrier that only counts writes.
One masked 13-byte text frame is fed per event-loop turn (feed -> queue -> the app's receive and
send -> carrier.write); the figure is the median of REPEAT runs minus the same turns with nothing
fed. On a busy machine wall-clock figures swing by half; compare code versions by instructions:

    PYTHONHASHSEED=0 valgrind --tool=callgrind python -m benchmarks.ws_hotpath 2000 1
    PYTHONHASHSEED=0 valgrind --tool=callgrind python -m benchmarks.ws_hotpath 6000 1

(the difference of the two totals over 4000: instructions per message, the floor turns included).

``--deflate``: the ``ws-deflate`` scenario's traffic instead. The handshake offers permessage-deflate
as Chromium does, and the frames fed are the load generator's: its seeded mix of JSON messages
(``loadgen.message_mix``), each compressed with a fresh compressor (``loadgen.compressed_frames``),
one per turn, cycling; the app echoes each as text, which the server compresses with its context.
Where the time goes: ``python -m cProfile -s tottime -m benchmarks.ws_hotpath --deflate 20000 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from contextvars import copy_context
from types import SimpleNamespace

from fastserve.asgi.flow import FlowControl
from fastserve.asgi.request import RequestHead
from fastserve.config import Config
from fastserve.server import ServerState, loop_factory
from fastserve.websocket.session import SessionSettings, WebSocketSession

from .loadgen import DEFLATE_OFFER, compressed_frames, message_mix, negotiated_deflate

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x01\x02\x03\x04"
PAYLOAD = b"Hello, World!"
FRAME = bytes([0x81, 0x80 | len(PAYLOAD)]) + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD))


class CountingCarrier:
    """A WebSocketCarrier that keeps nothing but a count of writes."""

    def __init__(self) -> None:
        self.writes = 0
        self.accept_headers: list[tuple[bytes, bytes]] = []

    def accept(self, headers) -> None:
        self.accept_headers = headers

    def deny(self, status, headers, body) -> None:
        pass

    def refuse(self, status, reason, headers=()) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.writes += 1

    def end(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def echo(scope, receive, send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send({"type": "websocket.send", "text": message["text"]})


def open_session(carrier: CountingCarrier, offer_deflate: bool = False) -> WebSocketSession:
    # No keepalive pings: under valgrind a run outlasts --ws-ping-interval, and the carrier
    # never answers, so the session would close mid-run (1011) and count fewer messages.
    config = Config(app="benchmarks.ws_hotpath:echo", ws_ping_interval=0)
    state = ServerState(config, {}, None, None)
    conn = SimpleNamespace(loop=asyncio.get_running_loop(), app=echo, context=copy_context(), state=state, config=config,
                           server=("127.0.0.1", 8000), tls=None, flow=FlowControl(None))  # type: ignore[arg-type]
    head = RequestHead()
    head.path, head.raw_path, head.query_string = "/ws", b"/ws", b""
    head.headers = [(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                    (b"sec-websocket-key", KEY), (b"sec-websocket-version", b"13")]
    if offer_deflate:
        name, _, value = DEFLATE_OFFER.strip().partition(": ")
        head.headers.append((name.lower().encode(), value.encode()))
    head.http_version, head.client, head.scheme = "1.1", ("127.0.0.1", 1), "http"
    session = WebSocketSession(conn, head, SessionSettings(config), carrier)  # type: ignore[arg-type]
    session.start(head, b"")
    return session


def deflate_frames(accept_headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The ws-deflate load generator's frames, compressed as the server's accept asks."""
    head = b"HTTP/1.1 101 Switching Protocols\r\n" + b"".join(
        name + b": " + value + b"\r\n" for name, value in accept_headers)
    params = negotiated_deflate(head)
    if params is None:
        raise RuntimeError("the server declined permessage-deflate")
    return compressed_frames(message_mix(seed=1), params)


async def measure(messages: int, repeat: int, deflate: bool = False) -> float:
    carrier = CountingCarrier()
    session = open_session(carrier, offer_deflate=deflate)
    for _ in range(5):  # the app accepts
        await asyncio.sleep(0)
    frames = deflate_frames(carrier.accept_headers) if deflate else [FRAME]
    schedule = [frames[i % len(frames)] for i in range(messages)]
    feed, turn = session.feed, asyncio.sleep
    runs = []
    for _ in range(repeat):
        before = carrier.writes
        start = time.perf_counter()
        for frame in schedule:
            feed(frame)
            await turn(0)
        elapsed = time.perf_counter() - start
        assert carrier.writes - before == messages, "not every message was echoed in its turn"
        start = time.perf_counter()
        for _ in range(messages):
            await turn(0)
        floor = time.perf_counter() - start
        runs.append((elapsed - floor) / messages * 1e6)
    session.lost(None)  # the client has gone: the app sees websocket.disconnect and returns
    for _ in range(5):
        await asyncio.sleep(0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ws_hotpath", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deflate", action="store_true", help="the ws-deflate scenario's compressed message mix")
    parser.add_argument("messages", type=int, nargs="?", default=20000)
    parser.add_argument("repeat", type=int, nargs="?", default=7)
    args = parser.parse_args()
    loop = loop_factory("auto")()
    try:
        print(f"{loop.run_until_complete(measure(args.messages, args.repeat, args.deflate)):.3f} µs per message")
    finally:
        loop.close()


if __name__ == "__main__":
    main()
