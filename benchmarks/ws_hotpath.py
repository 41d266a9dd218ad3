"""The in-process WebSocket hot path: µs per echoed message through WebSocketSession.

    python -m benchmarks.ws_hotpath [MESSAGES [REPEAT]]

No sockets and no HTTP parser: the real session (built as websocket.upgrade_handler builds it,
real Config and ServerState, no access log), an echo app, and a carrier that only counts writes.
One masked 13-byte text frame is fed per event-loop turn (feed -> queue -> the app's receive and
send -> carrier.write); the figure is the median of REPEAT runs minus the same turns with nothing
fed. On a busy machine wall-clock figures swing by half; compare code versions by instructions:

    PYTHONHASHSEED=0 valgrind --tool=callgrind python -m benchmarks.ws_hotpath 2000 1
    PYTHONHASHSEED=0 valgrind --tool=callgrind python -m benchmarks.ws_hotpath 6000 1

(the difference of the two totals over 4000: instructions per message, the floor turns included).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from types import SimpleNamespace

from fastserve.asgi.flow import FlowControl
from fastserve.asgi.request import RequestHead
from fastserve.config import Config
from fastserve.server import ServerState, loop_factory
from fastserve.websocket.session import SessionSettings, WebSocketSession

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x01\x02\x03\x04"
PAYLOAD = b"Hello, World!"
FRAME = bytes([0x81, 0x80 | len(PAYLOAD)]) + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD))


class CountingCarrier:
    """A WebSocketCarrier that keeps nothing but a count of writes."""

    def __init__(self) -> None:
        self.writes = 0

    def accept(self, headers) -> None:
        pass

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


def open_session(carrier: CountingCarrier) -> WebSocketSession:
    config = Config(app="benchmarks.ws_hotpath:echo")
    state = ServerState(config, {}, None, None)
    conn = SimpleNamespace(loop=asyncio.get_running_loop(), app=echo, state=state, config=config,
                           server=("127.0.0.1", 8000), tls=None, flow=FlowControl(None))  # type: ignore[arg-type]
    head = RequestHead()
    head.path, head.raw_path, head.query_string = "/ws", b"/ws", b""
    head.headers = [(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                    (b"sec-websocket-key", KEY), (b"sec-websocket-version", b"13")]
    head.http_version, head.client, head.scheme = "1.1", ("127.0.0.1", 1), "http"
    session = WebSocketSession(conn, head, SessionSettings(config), carrier)  # type: ignore[arg-type]
    session.start(head, b"")
    return session


async def measure(messages: int, repeat: int) -> float:
    carrier = CountingCarrier()
    session = open_session(carrier)
    for _ in range(5):  # the app accepts
        await asyncio.sleep(0)
    feed, turn = session.feed, asyncio.sleep
    runs = []
    for _ in range(repeat):
        before = carrier.writes
        start = time.perf_counter()
        for _ in range(messages):
            feed(FRAME)
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
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    loop = loop_factory("auto")()
    try:
        print(f"{loop.run_until_complete(measure(messages, repeat)):.3f} µs per message")
    finally:
        loop.close()


if __name__ == "__main__":
    main()
