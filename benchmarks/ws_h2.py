"""WebSocket echo over HTTP/2 (RFC 8441) against the same over HTTP/1.1, one run (issue #13).

    python -m benchmarks.ws_h2                                  # fastserve (zttp, h2), HTTP/1.1
    python -m benchmarks.ws_h2 --servers fastserve-zttp,hypercorn --streams 32 --connections 4

STREAMS WebSockets in all, spread over CONNECTIONS HTTP/2 connections (cleartext prior knowledge),
each with one 16-byte text message in flight (closed loop, as loadgen's ws-echo); over HTTP/1.1 the
same number of WebSockets, one connection each (benchmarks/loadgen.py's client). The app is
benchmarks/apps/raw.py's /ws/echo. Servers start fresh per round, rounds interleave; the figure is
the median messages/s. Pinning as the main benchmark: server on CPU 0, this client on CPU 1.

The HTTP/2 client costs little per message: frames are built and parsed here (hpack only for the
HEADERS of the extended CONNECT and its response), client windows are opened to 2^31-1 at the
start so it never sends WINDOW_UPDATE, and the WebSocket frames use the zero masking key.
fastserve runs from this interpreter (the project venv); hypercorn from the benchmark venv
(benchmarks/peers_env.py) when it exists, else it is skipped, saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import hpack

from .loadgen import TEXT_FRAME, Meter, open_ws
from .peers_env import BENCH_DIR, VENV_PYTHON, is_ready
from .system import stop_process

APP = "benchmarks.apps.raw:app"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WINDOW = 2**31 - 1
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


class H2WebSockets(asyncio.Protocol):
    """One HTTP/2 connection carrying `count` echo WebSockets, each one message in flight."""

    def __init__(self, port: int, count: int, meter: Meter) -> None:
        self.port, self.count, self.meter = port, count, meter
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self.buffer = b""
        self.sent_at: dict[int, float] = {}
        self.pending: dict[int, bytes] = {}  # WebSocket bytes of a stream not yet a whole frame
        self.opened = asyncio.get_running_loop().create_future()
        self.accepted = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        settings = (0x4).to_bytes(2, "big") + MAX_WINDOW.to_bytes(4, "big")  # INITIAL_WINDOW_SIZE
        out = [PREFACE, frame(SETTINGS, 0, 0, settings), frame(0x8, 0, 0, (MAX_WINDOW - 65_535).to_bytes(4, "big"))]
        for index in range(self.count):
            stream_id = 1 + 2 * index
            block = self.encoder.encode([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                                         (":path", "/ws/echo"), (":authority", f"127.0.0.1:{self.port}"),
                                         ("sec-websocket-version", "13")])
            out.append(frame(HEADERS, END_HEADERS, stream_id, block))
        transport.write(b"".join(out))

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the WebSockets opened"))

    def send_message(self, stream_id: int) -> None:
        self.sent_at[stream_id] = time.perf_counter()
        self.transport.write(frame(DATA, 0, stream_id, TEXT_FRAME))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            kind, flags = buffer[3], buffer[4]
            stream_id = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            payload = buffer[9:9 + length]
            buffer = buffer[9 + length:]
            if kind == DATA:
                self._websocket_bytes(stream_id, payload)
            elif kind == HEADERS:
                status = dict(self.decoder.decode(payload, raw=True)).get(b":status")
                if status != b"200":
                    self.opened.set_exception(ConnectionError(f"extended CONNECT answered {status!r}"))
                    return
                self.accepted += 1
                if self.accepted == self.count:
                    self.opened.set_result(None)
            elif kind == SETTINGS and not flags & ACK:
                self.transport.write(frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                self.transport.write(frame(PING, ACK, 0, payload))
            elif kind in (RST_STREAM, GOAWAY) and not self.opened.done():
                self.opened.set_exception(ConnectionError(f"frame type {kind} from the server"))
        self.buffer = buffer

    def _websocket_bytes(self, stream_id: int, data: bytes) -> None:
        data = self.pending.pop(stream_id, b"") + data
        while len(data) >= 2:
            size = data[1] & 0x7F  # (echoes of 16 bytes: never the extended lengths)
            if len(data) < 2 + size:
                break
            data = data[2 + size:]
            meter = self.meter
            if meter.recording:
                meter.count += 1
                meter.rtts.append(time.perf_counter() - self.sent_at[stream_id])
            self.send_message(stream_id)
        if data:
            self.pending[stream_id] = data

    def start(self) -> None:
        for index in range(self.count):
            self.send_message(1 + 2 * index)


async def measure_h2(port: int, streams: int, connections: int, warmup: float, duration: float) -> dict:
    meter = Meter()
    loop = asyncio.get_running_loop()
    per_connection = [streams // connections + (i < streams % connections) for i in range(connections)]
    clients = []
    for count in per_connection:
        _, client = await loop.create_connection(lambda c=count: H2WebSockets(port, c, meter), "127.0.0.1", port)
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(c.opened for c in clients)), 10)
    for client in clients:
        client.start()
    elapsed = await _timed(meter, warmup, duration)
    for client in clients:
        client.transport.close()
    return meter.summary(elapsed, "messages/s")


async def measure_h1(port: int, streams: int, warmup: float, duration: float) -> dict:
    meter = Meter()

    def on_message(client) -> None:
        if meter.recording:
            meter.count += 1
        meter.rtt(client)
        client.send_message()

    clients = await asyncio.gather(*(open_ws(port, "/ws/echo", on_message) for _ in range(streams)))
    for client in clients:
        client.send_message()
    elapsed = await _timed(meter, warmup, duration)
    for client in clients:
        client.close()
    return meter.summary(elapsed, "messages/s")


async def _timed(meter: Meter, warmup: float, duration: float) -> float:
    await asyncio.sleep(warmup)
    meter.count = 0
    meter.rtts = type(meter.rtts)("d")
    meter.recording = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    meter.recording = False
    return time.perf_counter() - started


# -- servers ------------------------------------------------------------------------------------
SERVERS = {  # name: (python to run it with, argv after it, HTTP version the client speaks)
    "fastserve-zttp": ("self", ["-m", "fastserve", APP, "--http2-codec", "zttp"], "2"),
    "fastserve-h2": ("self", ["-m", "fastserve", APP, "--http2-codec", "h2"], "2"),
    "fastserve-http1.1": ("self", ["-m", "fastserve", APP], "1.1"),
    "hypercorn": ("bench", ["-m", "hypercorn", APP, "--workers", "1", "-k", "uvloop", "--log-level", "warning"], "2"),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(name: str, port: int) -> subprocess.Popen:
    python, argv, _ = SERVERS[name]
    executable = sys.executable if python == "self" else str(VENV_PYTHON)
    if name.startswith("fastserve"):
        argv = [*argv, "--port", str(port), "--no-access-log", "--log-level", "warning"]
    else:
        argv = [*argv, "--bind", f"127.0.0.1:{port}"]
    pin = ["taskset", "-c", "0"] if os.cpu_count() and os.cpu_count() >= 2 else []
    proc = subprocess.Popen([*pin, executable, *argv], cwd=BENCH_DIR.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {proc.stderr.read().decode()[-1000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{name} did not listen in time")


def run_once(name: str, args: argparse.Namespace) -> dict:
    port = _free_port()
    proc = start_server(name, port)
    try:
        if SERVERS[name][2] == "2":
            coro = measure_h2(port, args.streams, args.connections, args.warmup, args.duration)
        else:
            coro = measure_h1(port, args.streams, args.warmup, args.duration)
        return asyncio.run(coro)
    finally:
        stop_process(proc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="fastserve-zttp,fastserve-h2,fastserve-http1.1,hypercorn")
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    if os.cpu_count() and os.cpu_count() >= 2:
        os.sched_setaffinity(0, {1})  # the client on CPU 1, the server on CPU 0
    servers = []
    for name in args.servers.split(","):
        if SERVERS[name][0] == "bench" and not is_ready():
            print(f"SKIPPED {name}: the benchmark venv ({Path(VENV_PYTHON).parent.parent}) is not set up; "
                  "run `make bench` once to install the peers", flush=True)
            continue
        servers.append(name)
    results: dict[str, list[dict]] = {name: [] for name in servers}
    for round_number in range(args.rounds):
        for name in servers:
            try:
                result = run_once(name, args)
            except (RuntimeError, ConnectionError, asyncio.TimeoutError) as exc:
                result = {"rate": 0.0, "p50_ms": None, "p99_ms": None, "error": str(exc)[:200]}
            results[name].append(result)
            print(f"round {round_number + 1} {name:18} {result['rate']:10.0f} msg/s  "
                  f"p50 {_ms(result['p50_ms'])}  p99 {_ms(result['p99_ms'])}  {result.get('error', '')}", flush=True)
    print(f"\nWebSocket echo, {args.streams} WebSockets (HTTP/2: on {args.connections} connections; HTTP/1.1: one "
          f"connection each), one message in flight each, {args.duration:g} s, median of {args.rounds}:")
    for name, runs in results.items():
        rates = [r["rate"] for r in runs]
        print(f"  {name:18} {statistics.median(rates):10.0f} msg/s   rounds: {', '.join(f'{r:.0f}' for r in rates)}")


def _ms(value: float | None) -> str:
    return "   -   " if value is None else f"{value:6.2f}ms"


if __name__ == "__main__":
    main()
