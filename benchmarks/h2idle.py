"""Memory per 1,000 idle HTTP/2 connections: fastserve (zttp and h2 codecs) against the peers.

    python -m benchmarks.h2idle                       # 3 interleaved rounds, 1,000 connections
    python -m benchmarks.h2idle --count 2000 --servers fastserve,granian

Each server starts fresh (the same command lines as benchmarks/h2load.py, h2c prior knowledge, with
keep-alive timeouts raised where a server has one, so the connections outlive the measurement). This
process opens COUNT connections, 100 at a time; each sends the preface, its SETTINGS, one GET / and
the SETTINGS ACK, waits for the response to end, and then stays open and silent. The server tree's
RSS is read before (after one warm-up connection) and one second after the last response; the figure
is (after - before) per 1,000 connections, KiB, median of the interleaved rounds. The server is pinned
to CPU 0 and this process to CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .compiled import fastserve_envs
from .h2load import APPS, _server_argv, _wait_listening, add_run_arguments, prepare_run
from .peers_env import BENCH_DIR
from .system import free_port, pinned, stop_process, tree_rss_kib
from .ws_h2 import ACK, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PREFACE, SETTINGS, frame

KEEP_ALIVE = "120"
# Options that keep an idle connection open for the measurement, per server (h2load.py's argv + these).
KEEP_OPEN = {
    "fastserve": ["--timeout-keep-alive", KEEP_ALIVE],
    "fastserve-h2": ["--timeout-keep-alive", KEEP_ALIVE],
    "fastserve-base": ["--timeout-keep-alive", KEEP_ALIVE],
    "uvicorn": ["--timeout-keep-alive", KEEP_ALIVE],
    "hypercorn": ["--keep-alive", KEEP_ALIVE],
    "gunicorn": ["--keep-alive", KEEP_ALIVE],
}


def request_bytes(port: int) -> bytes:
    """Preface, empty SETTINGS, and GET / on stream 1 in HPACK (static-table indices, no Huffman)."""
    authority = f"127.0.0.1:{port}".encode()
    block = bytes((0x82, 0x86, 0x84, 0x41, len(authority))) + authority  # :method GET, :scheme http, :path /
    return PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS | END_STREAM, 1, block)


class IdleH2(asyncio.Protocol):
    """One HTTP/2 connection: one GET, ACK the server's SETTINGS, then silent."""

    def __init__(self, port: int) -> None:
        self.answered = asyncio.get_running_loop().create_future()
        self.port = port
        self.buffer = b""
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(request_bytes(self.port))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                return
            kind, flags, stream = self.buffer[3], self.buffer[4], int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
            self.buffer = self.buffer[9 + length:]
            if kind == SETTINGS and not flags & ACK:
                self.transport.write(frame(SETTINGS, ACK, 0))
            elif kind in (HEADERS, DATA) and stream == 1 and flags & END_STREAM and not self.answered.done():
                self.answered.set_result(None)
            elif kind == GOAWAY and not self.answered.done():
                self.answered.set_exception(ConnectionError("GOAWAY before the response"))

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.answered.done():
            self.answered.set_exception(ConnectionError("closed before the response"))


async def open_idle(port: int) -> IdleH2:
    _, conn = await asyncio.get_running_loop().create_connection(lambda: IdleH2(port), "127.0.0.1", port)
    await asyncio.wait_for(conn.answered, 10)
    return conn


async def measure(port: int, pid: int, count: int, batch: int = 100) -> dict:
    warm = await open_idle(port)
    warm.transport.close()
    await asyncio.sleep(0.5)
    before = tree_rss_kib(pid)
    connections: list[IdleH2] = []
    for first in range(0, count, batch):
        connections += await asyncio.gather(*(open_idle(port) for _ in range(min(batch, count - first))))
    await asyncio.sleep(1.0)  # let the server settle (allocations after the last response)
    after = tree_rss_kib(pid)
    still_open = sum(not c.closed for c in connections)
    for conn in connections:
        conn.transport.close()
    await asyncio.sleep(0.2)
    if still_open < count:
        raise RuntimeError(f"only {still_open} of {count} connections stayed open")
    return {"before": before, "after": after, "per_1000": (after - before) * 1000 / count}


def run_once(name: str, args: argparse.Namespace, env: dict[str, str] | None) -> dict:
    port = free_port()
    app, _ = APPS["hello"]
    argv = _server_argv(name, args.bin_dir, port, app, None) + KEEP_OPEN.get(name, [])
    proc = subprocess.Popen(pinned(args.server_cpu, argv), cwd=BENCH_DIR.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(port, proc)
        time.sleep(0.3)
        return asyncio.run(measure(port, proc.pid, args.count))
    finally:
        stop_process(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="fastserve,fastserve-h2,granian,hypercorn,gunicorn,uvicorn")
    parser.add_argument("--count", type=int, default=1000, help="idle connections per run")
    parser.add_argument("--rounds", type=int, default=3)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    prepare_run(args)
    servers = args.servers.split(",")
    folder = tempfile.TemporaryDirectory()
    envs = fastserve_envs([name for name in servers if name.startswith("fastserve")], args.base,
                          args.bin_dir / "python", args.pure, Path(folder.name))
    results: dict[str, list[float]] = {name: [] for name in servers}
    for round_number in range(args.rounds):
        for name in servers:
            try:
                result = run_once(name, args, envs.get(name))
                results[name].append(result["per_1000"])
                status = f"RSS {result['before']} -> {result['after']} KiB"
            except (RuntimeError, OSError, asyncio.TimeoutError, subprocess.TimeoutExpired) as exc:
                status = f"failed: {type(exc).__name__}: {exc}"[:200]
            print(f"round {round_number + 1} {name:13} {status}", flush=True)
    failed = [name for name, rates in results.items() if not rates]
    print(f"\nKiB of server RSS per 1,000 idle HTTP/2 connections ({args.count} open, h2c prior knowledge), "
          f"median of {args.rounds}:")
    for name, rates in results.items():
        median = f"{statistics.median(rates):10.0f}" if rates else "    failed"
        print(f"  {name:13} {median} KiB   rounds: {', '.join(f'{r:.0f}' for r in rates)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
