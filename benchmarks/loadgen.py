"""The load generator for what wrk cannot do: WebSocket messages/s and idle connections.

Run by the driver as ``taskset -c CPU python -m benchmarks.loadgen MODE ...`` (pinned like wrk).
It speaks WebSocket itself, on raw asyncio protocols, so that the client costs little per message:
client frames use the all-zero masking key (valid per RFC 6455 section 5.3, and it makes masking a
no-op), frames are prebuilt, and only frame headers are parsed.

Modes (the result is one JSON object on the last line of stdout):
  ws-echo       CLIENTS connections to /ws/echo, each with one message in flight: messages/s, RTT
  ws-broadcast  CLIENTS connections to /ws/broadcast; client 0 sends, waits for its own copy, sends
                again; every client counts the copies it receives: deliveries/s, sender RTT
  idle-http     COUNT keep-alive connections, one GET / each, then idle
  idle-ws       COUNT WebSockets to /ws/echo, one message each, then idle
Idle modes print "READY <json>" once all connections are open, wait for a line on stdin (the
driver reads the server's RSS meanwhile), check how many are still open, then close them all.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from array import array

WS_KEY = base64.b64encode(os.urandom(16)).decode()
MESSAGE = b"hello, websocket"  # 16 bytes, sent as a text frame


def handshake_request(path: str, port: int) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame with the zero masking key (payload bytes unchanged)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


TEXT_FRAME = client_frame(0x1, MESSAGE)
CLOSE_FRAME = client_frame(0x8, (1000).to_bytes(2, "big"))


class WSClient(asyncio.Protocol):
    """One WebSocket connection: handshake, then counts data frames and answers pings."""

    def __init__(self, path: str, port: int, on_message) -> None:
        self.path, self.port = path, port
        self.on_message = on_message  # called with the client for every text/binary frame
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = False
        self.sent_at = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(handshake_request(self.path, self.port))

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during the WebSocket handshake"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            status_line = buffer.split(b"\r\n", 1)[0]
            if b" 101 " not in status_line + b" ":
                self.upgraded.set_exception(ConnectionError(f"handshake refused: {status_line.decode(errors='replace')}"))
                self.transport.close()
                return
            self.upgraded.set_result(None)
            buffer = buffer[end + 4:]
        self.buffer = self._parse_frames(buffer)

    def _parse_frames(self, buffer: bytes) -> bytes:
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            size = buffer[1] & 0x7F
            start = 2
            if size == 126:
                if len(buffer) < 4:
                    break
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    break
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            end = start + size
            if len(buffer) < end:
                break
            if opcode == 0x9:  # ping
                self.transport.write(client_frame(0xA, buffer[start:end]))
            elif opcode == 0x8:
                self.closed = True
                self.transport.close()
            elif opcode in (0x1, 0x2):
                self.on_message(self)
            buffer = buffer[end:]
        return buffer

    def send_message(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.write(TEXT_FRAME)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(CLOSE_FRAME)
            self.transport.close()


async def open_ws(port: int, path: str, on_message) -> WSClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: WSClient(path, port, on_message), "127.0.0.1", port)
    await asyncio.wait_for(client.upgraded, 10)
    return client


class Meter:
    """Counts messages and records round-trip times while ``recording`` is set."""

    def __init__(self) -> None:
        self.recording = False
        self.count = 0
        self.rtts = array("d")

    def rtt(self, client: WSClient) -> None:
        if self.recording:
            self.rtts.append(time.perf_counter() - client.sent_at)

    def summary(self, seconds: float, unit: str) -> dict:
        rtts = sorted(self.rtts)
        return {
            "rate": self.count / seconds,
            "unit": unit,
            "messages": self.count,
            "p50_ms": _percentile(rtts, 0.50) * 1000 if rtts else None,
            "p99_ms": _percentile(rtts, 0.99) * 1000 if rtts else None,
        }


def _percentile(sorted_values, fraction: float) -> float:
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _measure(meter: Meter, warmup: float, duration: float) -> float:
    await asyncio.sleep(warmup)
    meter.count = 0
    meter.recording = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    meter.recording = False
    return time.perf_counter() - started


async def ws_echo(port: int, clients: int, warmup: float, duration: float) -> dict:
    meter = Meter()

    def on_message(client: WSClient) -> None:
        if meter.recording:
            meter.count += 1
        meter.rtt(client)
        client.send_message()  # closed loop: the next message goes as soon as the echo is back

    connections = await asyncio.gather(*(open_ws(port, "/ws/echo", on_message) for _ in range(clients)))
    for client in connections:
        client.send_message()
    elapsed = await _measure(meter, warmup, duration)
    for client in connections:
        client.close()
    return meter.summary(elapsed, "messages/s")


async def ws_broadcast(port: int, clients: int, warmup: float, duration: float) -> dict:
    meter = Meter()
    sender_holder: list[WSClient] = []

    def on_message(client: WSClient) -> None:
        if meter.recording:
            meter.count += 1
        if sender_holder and client is sender_holder[0]:
            meter.rtt(client)
            client.send_message()

    connections = await asyncio.gather(*(open_ws(port, "/ws/broadcast", on_message) for _ in range(clients)))
    await asyncio.sleep(0.2)  # every app task has registered its member before the first message
    sender_holder.append(connections[0])
    connections[0].send_message()
    elapsed = await _measure(meter, warmup, duration)
    for client in connections:
        client.close()
    return meter.summary(elapsed, "deliveries/s")


class IdleHTTP(asyncio.Protocol):
    """One keep-alive connection that sends a single GET / and then stays idle."""

    def __init__(self, port: int) -> None:
        self.answered = asyncio.get_running_loop().create_future()
        self.closed = False
        self.port = port

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        if not self.answered.done() and b"\r\n\r\n" in data:
            self.answered.set_result(None)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.answered.done():
            self.answered.set_exception(ConnectionError("closed before the response"))

    def close(self) -> None:
        self.transport.close()


async def _open_idle_http(port: int) -> IdleHTTP:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: IdleHTTP(port), "127.0.0.1", port)
    await asyncio.wait_for(conn.answered, 10)
    return conn


async def _open_idle_ws(port: int) -> WSClient:
    answered = asyncio.get_running_loop().create_future()
    client = await open_ws(port, "/ws/echo", lambda c: answered.done() or answered.set_result(None))
    client.send_message()
    await asyncio.wait_for(answered, 10)
    return client


async def idle(port: int, count: int, opener, batch: int = 100) -> dict:
    """Open ``count`` connections (``batch`` at a time), report READY, wait for stdin, close."""
    connections = []
    started = time.perf_counter()
    for first in range(0, count, batch):
        connections += await asyncio.gather(*(opener(port) for _ in range(min(batch, count - first))))
    opened_in = time.perf_counter() - started
    print("READY " + json.dumps({"open": len(connections), "seconds": round(opened_in, 3)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    still_open = sum(not c.closed for c in connections)
    for conn in connections:
        conn.close()
    await asyncio.sleep(0.2)
    return {"open": len(connections), "still_open_at_measurement": still_open}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("ws-echo", "ws-broadcast", "idle-http", "idle-ws"))
    parser.add_argument("--port", type=int, required=True, help="server port on 127.0.0.1")
    parser.add_argument("--clients", type=int, default=32, help="WebSocket clients (ws-* modes)")
    parser.add_argument("--count", type=int, default=1000, help="idle connections (idle-* modes)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> dict:
    if args.mode == "ws-echo":
        return await ws_echo(args.port, args.clients, args.warmup, args.duration)
    if args.mode == "ws-broadcast":
        return await ws_broadcast(args.port, args.clients, args.warmup, args.duration)
    opener = _open_idle_http if args.mode == "idle-http" else _open_idle_ws
    return await idle(args.port, args.count, opener)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        result = runner(_main(args))
    except Exception as exc:  # reported to the driver as a result, not a traceback
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
