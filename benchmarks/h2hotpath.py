"""HTTP/2 GETs through a real H2Connection in process: µs, or instructions, per request.

    python -m benchmarks.h2hotpath                       # zttp codec, uvloop, 5 x 4000 requests
    python -m benchmarks.h2hotpath --codec h2 --loop asyncio
    python -m benchmarks.h2hotpath --callgrind           # instructions per request (valgrind)

The server side of a keep-alive h2load run without sockets: tests/harness.py's FakeTransport, the
server's own H2Connection, codec and ASGI cycle, a hello-world app (13 bytes, content-length set).
Requests arrive 10 HEADERS frames per read (HPACK-indexed after the first, as h2load sends them).
--callgrind runs the driver under valgrind for 1,000 and for 3,000 requests and divides the
difference by 2,000, so start-up and the preface cancel out.
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
from pathlib import Path

import hpack
from hyperframe.frame import HeadersFrame, SettingsFrame

REPO = Path(__file__).resolve().parent.parent
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()
REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"127.0.0.1:8000"),
           (b"user-agent", b"h2load nghttp2/1.52.0")]
HELLO = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
PER_READ = 10


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": HELLO})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


def request_frames(count: int) -> list[bytes]:
    encoder = hpack.Encoder()
    frames = []
    for n in range(count):
        frame = HeadersFrame(1 + 2 * n)
        frame.data = encoder.encode(REQUEST)
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        frames.append(frame.serialize())
    return frames


async def serve(codec: str, frames: list[bytes]) -> float:
    """Seconds to serve `frames` on one connection (past the preface)."""
    sys.path.insert(0, str(REPO))
    from tests.harness import FakeTransport, settle

    from fastserve.config import Config
    from fastserve.http2 import codec_class
    from fastserve.http2.connection import H2Connection
    from fastserve.state import ServerState

    loop = asyncio.get_running_loop()
    config = Config(app="benchmarks.h2hotpath:app", access_log=False, date_header=False)
    state = ServerState(config, {}, None, None)
    transport = FakeTransport(loop)
    conn = H2Connection(config, app, state, codec_class(codec, config.http2_settings()), config.http2_settings(), loop)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    conn.data_received(PREFACE)
    await settle(transport)
    started = time.perf_counter()
    for i in range(0, len(frames), PER_READ):
        conn.data_received(b"".join(frames[i : i + PER_READ]))
        await asyncio.sleep(0)  # the apps' tasks run
        await asyncio.sleep(0)  # their held writes are flushed
    await settle(transport)
    return time.perf_counter() - started


def run(codec: str, loop_name: str, count: int) -> float:
    frames = request_frames(4000)[:count]  # always 4000 encoded: the client's cost cancels out
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(serve(codec, frames))
    return asyncio.run(serve(codec, frames))


def callgrind(codec: str, loop_name: str) -> float:
    """Instructions per request: (3,000 requests - 1,000 requests) / 2,000."""
    counts = {}
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as folder:
        for count in (1000, 3000):
            out = Path(folder) / f"cg.{count}"
            result = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
                 "benchmarks.h2hotpath", "--codec", codec, "--loop", loop_name, "--requests", str(count), "--once"],
                capture_output=True, text=True, cwd=REPO, env=env, check=True,
            )
            counts[count] = int(re.search(r"Collected : (\d+)", result.stderr).group(1))
    return (counts[3000] - counts[1000]) / 2000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", default="zttp", choices=("zttp", "h2"))
    parser.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"))
    parser.add_argument("--requests", type=int, default=4000)  # at most 4000: zttp ends a connection at 4096 streams
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)  # one run, no output
    args = parser.parse_args(argv)
    if args.once:
        run(args.codec, args.loop, args.requests)
        return
    if args.callgrind:
        per_request = callgrind(args.codec, args.loop)
        print(f"HTTP/2 {args.codec}/{args.loop} GET: {per_request / 1000:.1f}k instructions per request (callgrind)")
        return
    times = [run(args.codec, args.loop, args.requests) / args.requests * 1e6 for _ in range(args.repeat)]
    print(f"HTTP/2 {args.codec}/{args.loop} GET: {statistics.median(times):.1f} µs per request "
          f"(median of {args.repeat} x {args.requests}; runs: {', '.join(f'{t:.1f}' for t in times)})")


if __name__ == "__main__":
    main()
