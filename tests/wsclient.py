"""A deliberately minimal raw-socket WebSocket client, for the frames a real client never sends."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import urllib.request

GOOD_KEY = base64.b64encode(b"0123456789abcdef").decode()

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def handshake_request(path: str = "/ws/echo", key: str = GOOD_KEY, version: str = "13", extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


class RawWebSocket:
    """An open connection after a successful handshake; reads server frames one at a time."""

    def __init__(self, port: int, path: str = "/ws/echo", extra: str = "", timeout: float = 5.0, early: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall(handshake_request(path, extra=extra) + early)  # early: frames sent before the 101
        self.buffer = b""
        head = self._read_until(b"\r\n\r\n")
        self.response_head = head.decode("latin-1")
        if not head.startswith(b"HTTP/1.1 101 "):
            raise AssertionError(f"handshake refused: {self.response_head!r}")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buffer += chunk

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> tuple[int, bytes]:
        b1, b2 = self._read_exact(2)
        assert not b2 & 0x80, "server frames must not be masked"
        n = b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read_exact(8))
        return b1 & 0x0F, self._read_exact(n)

    def recv_close(self) -> tuple[int, str]:
        """Skip data and ping frames until the close frame; return its code and reason."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                return code, payload[2:].decode()

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the TCP connection."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def get_events(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/events", timeout=5) as response:
        return json.loads(response.read())
