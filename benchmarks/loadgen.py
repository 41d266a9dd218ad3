"""The load generator for what wrk cannot do: WebSocket messages/s and idle connections.

Run by the driver as ``taskset -c CPU python -m benchmarks.loadgen MODE ...`` (pinned like wrk).
It speaks WebSocket itself, on raw asyncio protocols, so that the client costs little per message:
client frames use the all-zero masking key (valid per RFC 6455 section 5.3, and it makes masking a
no-op), frames are prebuilt, and only frame headers are parsed.

Modes (the result is one JSON object on the last line of stdout):
  ws-echo       CLIENTS connections to /ws/echo, each with one message in flight: messages/s, RTT
  ws-deflate    like ws-echo, but the client offers permessage-deflate as Chromium does and sends a
                seeded, browser-like mix of JSON text messages (see message_mix): messages/s and
                payload MB/s (uncompressed bytes echoed back), RTT
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
import random
import sys
import time
import zlib
from array import array

WS_KEY = base64.b64encode(os.urandom(16)).decode()
MESSAGE = b"hello, websocket"  # 16 bytes, sent as a text frame


def handshake_request(path: str, port: int, extra_headers: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra_headers}\r\n"
    ).encode()


def frame_bounds(buffer: bytes) -> tuple[int, int] | None:
    """Where the payload of the server frame at the start of ``buffer`` begins and ends, or None
    while the frame is incomplete (server frames are unmasked)."""
    if len(buffer) < 2:
        return None
    size, start = buffer[1] & 0x7F, 2
    if size == 126:
        if len(buffer) < 4:
            return None
        size, start = int.from_bytes(buffer[2:4], "big"), 4
    elif size == 127:
        if len(buffer) < 10:
            return None
        size, start = int.from_bytes(buffer[2:10], "big"), 10
    end = start + size
    return (start, end) if len(buffer) >= end else None


def client_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """A masked client frame with the zero masking key (payload bytes unchanged)."""
    size = len(payload)
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 65536:
        header = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


TEXT_FRAME = client_frame(0x1, MESSAGE)
CLOSE_FRAME = client_frame(0x8, (1000).to_bytes(2, "big"))


class WSClient(asyncio.Protocol):
    """One WebSocket connection: handshake, then counts data frames and answers pings."""

    handshake_headers = ""  # extra request header lines, each ending in CRLF

    def __init__(self, path: str, port: int, on_message) -> None:
        self.path, self.port = path, port
        self.on_message = on_message  # called with the client for every text/binary frame
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = False
        self.sent_at = 0.0
        self.response_head = b""

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(handshake_request(self.path, self.port, self.handshake_headers))

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
            self.response_head = buffer[:end]
            self.upgraded.set_result(None)
            buffer = buffer[end + 4:]
        self.buffer = self._parse_frames(buffer)

    def _parse_frames(self, buffer: bytes) -> bytes:
        while (bounds := frame_bounds(buffer)) is not None:
            start, end = bounds
            opcode = buffer[0] & 0x0F
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


async def open_ws(port: int, path: str, on_message, client_class: type[WSClient] = WSClient) -> WSClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: client_class(path, port, on_message), "127.0.0.1", port)
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


# -- ws-deflate: permessage-deflate (RFC 7692) with a browser-like mix of message sizes -----------
# Chromium's offer: client_max_window_bits without a value, no *_no_context_takeover requested.
DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
DEFLATE_TAIL = b"\x00\x00\xff\xff"
MIX_POOL_SIZE = 256
# (share of messages, smallest, largest size in bytes): mostly small JSON, some larger, a few 64 KiB.
MESSAGE_MIX = ((0.85, 50, 500), (0.13, 2 * 1024, 16 * 1024), (0.02, 64 * 1024, 64 * 1024))
_WORDS = ("user", "room", "typing", "message", "presence", "online", "away", "cursor", "update",
          "delta", "status", "ok", "seen", "reply", "thread", "channel", "avatar", "title", "body")


def json_message(rng: random.Random, size: int, seq: int) -> bytes:
    """A JSON object of exactly ``size`` bytes: chat-like records, then a text field filling the rest."""
    items: list[str] = []
    used = len(_json_envelope(seq, "", ""))
    while used < size - 200:
        item = _compact({"id": rng.randrange(10**6), "user": rng.choice(_WORDS) + str(rng.randrange(100)),
                         "kind": rng.choice(_WORDS), "at": round(rng.uniform(1.7e9, 1.8e9), 3),
                         "body": " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(3, 12)))})
        items.append(item)
        used += len(item) + (len(items) > 1)  # the comma between records
    filler = " ".join(rng.choice(_WORDS) for _ in range(max(0, size - used) // 3 + 1))
    return _json_envelope(seq, ",".join(items), filler[:max(0, size - used)]).encode()


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_envelope(seq: int, items: str, text: str) -> str:
    return f'{{"type":"event","seq":{seq},"items":[{items}],"text":{_compact(text)}}}'


def message_mix(seed: int, count: int = MIX_POOL_SIZE) -> list[bytes]:
    """The seeded pool of text messages every ws-deflate client cycles through."""
    rng = random.Random(seed)
    shares = [share for share, _, _ in MESSAGE_MIX]
    messages = []
    for seq in range(count):
        _, low, high = rng.choices(MESSAGE_MIX, weights=shares)[0]
        messages.append(json_message(rng, rng.randint(low, high), seq))
    return messages


def negotiated_deflate(response_head: bytes) -> dict | None:
    """The permessage-deflate parameters the server accepted, or None if it declined."""
    for line in response_head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"sec-websocket-extensions":
            continue
        parts = [p.strip() for p in value.decode("latin-1").split(";")]
        if parts[0].lower() != "permessage-deflate":
            continue
        params = {}
        for part in parts[1:]:
            key, _, val = part.partition("=")
            params[key.strip().lower()] = val.strip().strip('"') or None
        return params
    return None


def compressed_frames(messages: list[bytes], params: dict | None) -> list[bytes]:
    """Each message as one prebuilt client frame.

    Every message is compressed with a fresh compressor: a sender may always drop its context
    (RFC 7692 section 7.2.1), and it keeps the client's cost per message low and constant, while
    the server still inflates with its context and deflates its replies with context takeover.
    """
    if params is None:
        return [client_frame(0x1, m) for m in messages]
    bits = int(params.get("client_max_window_bits") or 15)
    if bits < 9:
        raise ValueError(f"server asked for client_max_window_bits={bits}; zlib cannot honour below 9")
    frames = []
    for message in messages:
        deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits)
        payload = deflater.compress(message) + deflater.flush(zlib.Z_SYNC_FLUSH)
        frames.append(client_frame(0x1, payload[:-4] if payload.endswith(DEFLATE_TAIL) else payload, rsv1=True))
    return frames


class DeflateWSClient(WSClient):
    """A WebSocket client that reassembles fragmented messages and inflates compressed ones."""

    handshake_headers = DEFLATE_OFFER

    def __init__(self, path: str, port: int, on_message) -> None:
        super().__init__(path, port, on_message)
        self.inflater = zlib.decompressobj(-15)  # 15 bits decode any smaller window, with or without takeover
        self.fragments: list[bytes] = []
        self.compressed = False
        self.received_size = 0  # payload bytes of the last complete message, after inflating
        self.next_index = 0  # position in the message pool
        self.expected_size = 0

    def _parse_frames(self, buffer: bytes) -> bytes:
        while (bounds := frame_bounds(buffer)) is not None:
            start, end = bounds
            first, opcode = buffer[0], buffer[0] & 0x0F
            payload = buffer[start:end]
            buffer = buffer[end:]
            if opcode == 0x9:
                self.transport.write(client_frame(0xA, payload))
            elif opcode == 0x8:
                self.closed = True
                self.transport.close()
            elif opcode in (0x0, 0x1, 0x2):
                if opcode:
                    self.compressed = bool(first & 0x40)
                self.fragments.append(payload)
                if first & 0x80:
                    self._message_complete()
        return buffer

    def _message_complete(self) -> None:
        data = b"".join(self.fragments)
        self.fragments = []
        if self.compressed:
            data = self.inflater.decompress(data + DEFLATE_TAIL)
        self.received_size = len(data)
        self.on_message(self)


async def ws_deflate(port: int, clients: int, warmup: float, duration: float, seed: int) -> dict:
    meter = Meter()
    messages = message_mix(seed)
    sizes = [len(m) for m in messages]
    frames: list[bytes] = []
    totals = {"payload": 0, "mismatched": 0}

    def send_next(client: DeflateWSClient) -> None:
        index = client.next_index
        client.next_index = (index + 1) % len(frames)
        client.expected_size = sizes[index]
        client.sent_at = time.perf_counter()
        client.transport.write(frames[index])

    def on_message(client: DeflateWSClient) -> None:
        if client.received_size != client.expected_size:
            totals["mismatched"] += 1
        if meter.recording:
            meter.count += 1
            totals["payload"] += client.received_size
        meter.rtt(client)
        send_next(client)

    connections = await asyncio.gather(
        *(open_ws(port, "/ws/echo", on_message, DeflateWSClient) for _ in range(clients)))
    params = negotiated_deflate(connections[0].response_head)
    frames[:] = compressed_frames(messages, params)
    for number, client in enumerate(connections):
        client.next_index = number * 7 % len(frames)  # clients start at different places in the mix
        send_next(client)
    elapsed = await _measure(meter, warmup, duration)
    for client in connections:
        client.close()
    if totals["mismatched"]:
        raise RuntimeError(f"{totals['mismatched']} echoed messages differed in size from what was sent")
    result = meter.summary(elapsed, "messages/s")
    result["payload_mb_per_s"] = round(totals["payload"] / elapsed / 1e6, 3)
    result["deflate"] = "declined by the server" if params is None else "permessage-deflate" + "".join(
        f"; {k}" + (f"={v}" if v else "") for k, v in params.items())
    result["mix"] = {"seed": seed, "messages": len(messages), "mean_bytes": round(sum(sizes) / len(sizes))}
    return result


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
    parser.add_argument("mode", choices=("ws-echo", "ws-deflate", "ws-broadcast", "idle-http", "idle-ws"))
    parser.add_argument("--port", type=int, required=True, help="server port on 127.0.0.1")
    parser.add_argument("--clients", type=int, default=32, help="WebSocket clients (ws-* modes)")
    parser.add_argument("--count", type=int, default=1000, help="idle connections (idle-* modes)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the ws-deflate message mix")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> dict:
    if args.mode == "ws-echo":
        return await ws_echo(args.port, args.clients, args.warmup, args.duration)
    if args.mode == "ws-deflate":
        return await ws_deflate(args.port, args.clients, args.warmup, args.duration, args.seed)
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
