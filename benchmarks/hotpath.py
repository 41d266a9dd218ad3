"""The in-process hot path: µs (and, under callgrind, instructions) per keep-alive GET.

    python -m benchmarks.hotpath                     # both parsers, uvloop, µs per request
    python -m benchmarks.hotpath --pipeline 16       # 16 requests per read, as under load
    python -m benchmarks.hotpath --callgrind         # + instructions per request (valgrind)
    python -m benchmarks.hotpath --close             # a new connection per request (Connection: close)
    python -m benchmarks.hotpath --browser           # the GET carries a browser's 16 header fields

No sockets and no load generator: the real ``HTTPProtocol``, parser adapter and cycle, built as
``server.py``'s factory builds them (real ``Config`` and ``ServerState``, no access log, as the
benchmarks run the server), answer wrk's request (``GET / HTTP/1.1`` with a Host header) with the
raw hello-world app (benchmarks/apps/raw.py) through a transport that only counts what is written.
One request is fed per event-loop iteration, so each pays the write batch's ``call_soon`` and
flush (under real load one iteration serves ~50 requests: use ``--pipeline`` to see that side).
``--close``: every request comes on a new connection with ``Connection: close``, so each also pays
``connection_made``, the close and ``connection_lost`` (not the kernel's accept and close).

It runs the fastserve it imports: the editable install's .py files, or the compiled build with
``PYTHONPATH=.compiled/src`` (``make compiled``); the first line of its output says which (callgrind's runs inherit it).

µs per request: ``perf_counter`` over --requests requests, the median of --repeat runs, minus the
harness floor (the same loop of iterations with nothing fed), measured the same way.

Instructions per request (``--callgrind``, needs valgrind): the script runs itself twice under
``valgrind --tool=callgrind`` with ``PYTHONHASHSEED=0``, once feeding requests and once running
the bare floor loop, after the same set-up and warm-up; the difference of the two totals divided
by the number of requests is the figure (start-up, imports and the floor cancel out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from asyncio.tasks import _enter_task, _leave_task  # (private: see feed_keep_alive)
from typing import Any

from fastserve.config import Config
from fastserve.http1 import parser_class
from fastserve.http1.connection import HTTPProtocol
from fastserve.server import ServerState, loop_factory
from fastserve.websocket import upgrade_handler

from .apps.raw import HELLO, app
from .scenarios import BROWSER_HEADERS

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"  # what wrk sends
CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: close\r\n\r\n"
# wrk's GET with the fields a browser sends (benchmarks/scenarios.py: the browser-c64 scenario's).
BROWSER_REQUEST = REQUEST[:-2] + b"".join(b"%s\r\n" % field.encode() for field in BROWSER_HEADERS) + b"\r\n"
WARMUP = 2000
EXTRA_INFO = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}


class CountingTransport(asyncio.Transport):
    """A transport that keeps nothing but a count of bytes and writes (cheap, like a socket's)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.writes = 0
        self.closed = False
        self.reading = True
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.writes += 1

    def writelines(self, list_of_data) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False  # a socket's transport stops reading: so does feed()

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return EXTRA_INFO.get(name, default)  # (a dict built per call would cost ~1.5k per lookup)


def connection(http: str, like: HTTPProtocol | None = None) -> tuple[HTTPProtocol, CountingTransport]:
    """A connection as the server makes one (``like``: another one whose Config and ServerState it shares)."""
    loop = asyncio.get_running_loop()
    if like is None:
        config = Config(app="benchmarks.apps.raw:app", http=http, access_log=False)
        state = ServerState(config, {}, None, upgrade_handler(config, app))
        parser = parser_class(http)
    else:  # (parser_class() imports inside a function: the server calls it once, not per connection)
        config, state, parser = like.config, like.state, type(like.parser)
    protocol = HTTPProtocol(config, app, state, parser, loop)
    transport = CountingTransport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return protocol, transport


async def feed_keep_alive(protocol: HTTPProtocol, iterations: int, data: bytes) -> None:
    data_received = protocol.data_received
    transport = protocol.transport
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for _ in range(iterations):
        while not transport.reading:  # pipelined requests queued: the protocol paused reading
            await asyncio.sleep(0)
        # As a transport calls it: outside any Task (this harness runs in one; floor() pays the same).
        _leave_task(loop, task)
        try:
            data_received(data)
        finally:
            _enter_task(loop, task)
        await asyncio.sleep(0)  # the end of the loop iteration: the write batch flushes


async def feed_closing(protocol: HTTPProtocol, iterations: int, data: bytes) -> None:
    """As feed_keep_alive(), with a new connection per request (``protocol`` lends its Config and
    ServerState); the count of bytes written goes to ``protocol``'s transport."""
    total = protocol.transport
    http = protocol.config.http
    protocol.idle_since = None  # its own keep-alive timeout must not close it meanwhile
    for _ in range(iterations):
        conn, transport = connection(http, protocol)
        conn.data_received(data)
        for _ in range(100):  # the app's Task, then the close (a few loop iterations)
            if transport.closed:
                break
            await asyncio.sleep(0)
        else:
            raise SystemExit("the harness is broken: a Connection: close request left its connection open")
        conn.connection_lost(None)
        transport.set_protocol(None)  # as uvloop's transport does: no reference cycle left for the GC
        total.written += transport.written
        total.writes += transport.writes


async def floor(iterations: int) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for _ in range(iterations):
        _leave_task(loop, task)
        try:
            pass
        finally:
            _enter_task(loop, task)
        await asyncio.sleep(0)


async def settle(transport: CountingTransport) -> None:
    """Let the last requests' app Tasks (and the write batch) finish before answers are counted:
    without an eager Task start (Python < 3.12) an app runs one loop iteration after its read,
    and a pipelined request starts once the one ahead of it is answered."""
    quiet = 0
    while quiet < 8:
        written = transport.written
        await asyncio.sleep(0)
        quiet = quiet + 1 if transport.written == written else 0


def request_bytes(pipeline: int, close: bool, browser: bool) -> bytes:
    """What one read brings."""
    if close:
        return CLOSE_REQUEST
    return (BROWSER_REQUEST if browser else REQUEST) * pipeline


async def measure(http: str, requests: int, repeat: int, pipeline: int, close: bool = False, browser: bool = False) -> dict:
    protocol, transport = connection(http)
    data = request_bytes(pipeline, close, browser)
    feed = feed_closing if close else feed_keep_alive
    iterations = max(1, requests // pipeline)
    await feed(protocol, WARMUP // pipeline or 1, data)
    runs, floors = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        await feed(protocol, iterations, data)
        runs.append(time.perf_counter() - start)
        start = time.perf_counter()
        await floor(iterations)
        floors.append(time.perf_counter() - start)
    await settle(transport)
    answered = iterations * pipeline * repeat + (WARMUP // pipeline or 1) * pipeline
    check_answers(transport, answered)
    await hang_up(protocol)
    per_request = 1e6 / (iterations * pipeline)
    return {
        "us": statistics.median(runs) * per_request - statistics.median(floors) * per_request,
        "floor_us": statistics.median(floors) * per_request,
        "requests": iterations * pipeline,
    }


async def hang_up(protocol: HTTPProtocol) -> None:
    """The client leaves, as at the end of a real run: the connection's app Task waiting for its
    next request ends (rather than being destroyed pending when the loop closes)."""
    protocol.connection_lost(None)
    await asyncio.sleep(0)


def check_answers(transport: CountingTransport, requests: int) -> None:
    """Every request got the whole hello-world response, and the connection is still open."""
    response_size = transport.written / requests if requests else 0
    if transport.closed or transport.written % requests or response_size < len(HELLO):
        raise SystemExit(f"the harness is broken: {transport.written} bytes for {requests} requests, "
                         f"closed={transport.closed}")


# -- callgrind ----------------------------------------------------------------------------------
async def callgrind_body(http: str, mode: str, requests: int, pipeline: int, close: bool = False,
                         browser: bool = False) -> None:
    protocol, transport = connection(http)
    data = request_bytes(pipeline, close, browser)
    feed = feed_closing if close else feed_keep_alive
    await feed(protocol, WARMUP // pipeline or 1, data)
    iterations = max(1, requests // pipeline)
    if mode == "requests":
        await feed(protocol, iterations, data)
    else:
        await floor(iterations)
    await settle(transport)
    check_answers(transport, (WARMUP // pipeline or 1) * pipeline + (iterations * pipeline if mode == "requests" else 0))
    await hang_up(protocol)


def instructions(http: str, loop: str, requests: int, pipeline: int, close: bool = False, browser: bool = False) -> float:
    totals = {}
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("requests", "floor"):
            out = os.path.join(tmp, f"callgrind.{mode}")
            command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
                       "benchmarks.hotpath", "--_callgrind-body", mode, "--http", http, "--loop", loop,
                       "--requests", str(requests), "--pipeline", str(pipeline), *(["--close"] if close else []),
                       *(["--browser"] if browser else [])]
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            totals[mode] = callgrind_total(out)
    return (totals["requests"] - totals["floor"]) / (max(1, requests // pipeline) * pipeline)


def callgrind_total(path: str) -> int:
    with open(path) as f:
        for line in f:
            match = re.match(r"(?:summary|totals):\s*(\d+)", line)
            if match:
                return int(match.group(1))
    raise SystemExit(f"no instruction total in {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--http", default="httptools,h11", help="parsers, comma-separated")
    p.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"), help="event loop")
    p.add_argument("--requests", type=int, default=20000, help="requests per timed run")
    p.add_argument("--repeat", type=int, default=7, help="timed runs; the median is reported")
    p.add_argument("--pipeline", type=int, default=1, help="requests per read (1: wrk's keep-alive GET)")
    p.add_argument("--close", action="store_true", help="a new connection per request (Connection: close)")
    p.add_argument("--browser", action="store_true", help="the GET carries a browser's header fields, not only Host")
    p.add_argument("--callgrind", action="store_true", help="also count instructions per request (valgrind)")
    p.add_argument("--callgrind-requests", type=int, default=2000, help="requests counted under callgrind")
    p.add_argument("--_callgrind-body", dest="callgrind_body", choices=("requests", "floor"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    parsers = [name.strip() for name in args.http.split(",") if name.strip()]

    def run(coro: Any) -> Any:
        event_loop = loop_factory(args.loop)()
        try:
            return event_loop.run_until_complete(coro)
        finally:
            event_loop.close()

    if args.callgrind_body:
        run(callgrind_body(parsers[0], args.callgrind_body, args.requests, args.pipeline, args.close, args.browser))
        return 0
    from fastserve.compiled import build_kind

    print(f"fastserve: {build_kind()}", flush=True)
    shape = "keep-alive GET" if args.pipeline == 1 else f"{args.pipeline} pipelined GETs per read"
    if args.close:
        shape = "GET with connection close, a new connection each"
    elif args.browser:
        shape = shape.replace("GET", "GET with a browser's fields")
    for http in parsers:
        result = run(measure(http, args.requests, args.repeat, args.pipeline, args.close, args.browser))
        line = (f"{http}/{args.loop} {shape}: {result['us']:.2f} µs per request "
                f"(median of {args.repeat} x {result['requests']}, harness floor {result['floor_us']:.2f} µs subtracted)")
        if args.callgrind:
            count = instructions(http, args.loop, args.callgrind_requests, args.pipeline, args.close, args.browser)
            line += f"; {count / 1000:.1f}k instructions per request (callgrind, PYTHONHASHSEED=0)"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
