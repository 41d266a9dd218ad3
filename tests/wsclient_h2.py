"""A WebSocket client over HTTP/2 (RFC 8441) against a real server: an `h2` library connection on
a real socket (cleartext prior knowledge, or TLS with ALPN h2) doing extended CONNECTs, with
websockets' sans-I/O ClientProtocol framing on each stream. What the `websockets` client and
tests/wsclient.py give the HTTP/1.1 tests.
"""

from __future__ import annotations

import socket
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import Frame
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.headers import parse_extension
from websockets.protocol import State
from websockets.uri import parse_uri

from .h2_client import codecs
from .helpers import IMPL_IDS, IMPLS, ServerProcess

H2_TRANSPORTS = ["h2-zttp" if c.__name__ == "ZttpCodec" else "h2-h2" for c in codecs()]
# For a `transport` parametrized fixture: HTTP/1.1 on every parser x loop; HTTP/2 (its own codecs,
# no parser) on one loop, once per codec.
TARGETS = [("http1.1", impl) for impl in IMPLS] + [(t, ("httptools", "uvloop")) for t in H2_TRANSPORTS]
TARGET_IDS = [f"http1.1-{impl_id}" for impl_id in IMPL_IDS] + H2_TRANSPORTS


class Stream:
    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.header_list: list[tuple[bytes, bytes]] = []  # as sent, repeats included
        self.body = b""
        self.ended = False
        self.reset: int | None = None


class H2Client:
    """A blocking HTTP/2 client over one socket; `pump` reads until a condition holds."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, validate: bool = True) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=validate, normalize_outbound_headers=validate))
        self.conn.initiate_connection()
        self.streams: dict[int, Stream] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.flush()
        self.pump(lambda: self.conn.remote_settings.enable_connect_protocol is not None and self.settings_seen)

    settings_seen = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, done, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the server")
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("the server closed the connection")
            for event in self.conn.receive_data(data):
                self._on(event)
            self.flush()

    def _on(self, event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_seen = True
            return
        if isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
            return
        stream_id = getattr(event, "stream_id", None)
        if not stream_id:
            return
        stream = self.streams.setdefault(stream_id, Stream())
        if isinstance(event, h2.events.ResponseReceived):
            stream.header_list = list(event.headers)
            stream.headers = dict(event.headers)
            stream.status = int(stream.headers[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            stream.body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset):
            stream.reset = event.error_code

    def get(self, path: str) -> Stream:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"), (":path", path),
                                           (":authority", "127.0.0.1")], end_stream=True)
        self.flush()
        self.pump(lambda: stream_id in self.streams and self.streams[stream_id].ended)
        return self.streams[stream_id]

    def close(self) -> None:
        self.sock.close()


class WebSocket:
    """One WebSocket on a stream of an H2Client."""

    def __init__(self, client: H2Client, path: str, extra=(), scheme: str = "http", deflate: bool = False) -> None:
        self.client = client
        self.stream_id = client.conn.get_next_available_stream_id()
        self.protocol = ClientProtocol(parse_uri("ws://127.0.0.1/"), state=State.OPEN, max_size=None)
        headers = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", scheme), (":path", path),
                   (":authority", "127.0.0.1"), ("sec-websocket-version", "13"), *extra]
        if deflate:
            headers.append(("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"))
        client.conn.send_headers(self.stream_id, headers, end_stream=False)
        client.flush()
        client.pump(lambda: self.stream.status is not None or self.stream.reset is not None)
        self.read = 0
        value = self.stream.headers.get(b"sec-websocket-extensions")
        if deflate and value:
            [(_, params)] = parse_extension(value.decode())
            self.protocol.extensions = [ClientPerMessageDeflateFactory(client_max_window_bits=True)
                                        .process_response_params(params, [])]

    @property
    def stream(self) -> Stream:
        return self.client.streams.setdefault(self.stream_id, Stream())

    def send(self, method: str, *args) -> None:
        getattr(self.protocol, method)(*args)
        self.flush()

    def flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self._send_data(data)
            else:
                self.client.conn.end_stream(self.stream_id)
        self.client.flush()

    def _send_data(self, data: bytes) -> None:
        """As the windows allow, waiting for the server's WINDOW_UPDATEs."""
        conn = self.client.conn
        while data:
            self.client.pump(lambda: conn.local_flow_control_window(self.stream_id) > 0)
            size = min(len(data), conn.local_flow_control_window(self.stream_id), conn.max_outbound_frame_size)
            conn.send_data(self.stream_id, data[:size])
            self.client.flush()
            data = data[size:]

    def _take(self) -> list:
        body = self.stream.body
        self.protocol.receive_data(body[self.read:])
        self.read = len(body)
        return self.protocol.events_received()

    def frames(self, count: int = 1) -> list[tuple]:
        """The next `count` frames from the server (the client's own answers are sent)."""
        got: list = []

        def enough() -> bool:
            got.extend(self._take())
            return len(got) >= count

        self.client.pump(enough)
        self.flush()
        return [(f.opcode, f.data) for f in got]

    def end(self) -> None:
        self.client.conn.end_stream(self.stream_id)
        self.client.flush()


def split_frames(data: bytes) -> tuple[list, bytes]:
    """The complete frames at the start of `data`, and the rest."""
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9:9 + length]))
        frames.append(frame)
        data = data[9 + length:]
    return frames, data


@dataclass
class Target:
    transport: str  # "http1.1", "h2-zttp" or "h2-h2"
    server: ServerProcess

    @property
    def port(self) -> int:
        return self.server.port


def start_target(param: tuple, *args: str, app: str = "apps.ws:app") -> Target:
    """A started server for one of TARGETS (the caller stops `target.server`)."""
    transport, (http, loop) = param
    codec = ["--http2-codec", transport.removeprefix("h2-")] if transport != "http1.1" else []
    server = ServerProcess(app, "--http", http, "--loop", loop, *codec, *args)
    return Target(transport, server.start())


@contextmanager
def opened(target: Target, path: str, **options):
    session = open_session(target.transport, target.port, path, **options)
    try:
        yield session
    finally:
        session.end()


def closed_by_server(ws: Session) -> tuple[int, str]:
    with pytest.raises(Closed) as info:
        ws.recv()
    return info.value.code, info.value.reason


class Closed(Exception):
    """The server closed the WebSocket: its close frame's code and reason (1006 if it sent none)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code, self.reason = code, reason


class Session:
    """One WebSocket, over HTTP/1.1 (the `websockets` sync client) or over HTTP/2 (an extended
    CONNECT on its own connection), with one blocking API so a behaviour test runs on both.
    After a refused handshake `accepted` is False and `status`, `headers`, `body` are the answer."""

    accepted: bool
    status: int
    headers: list[tuple[str, str]]  # the handshake answer's, names lower-case, repeats included
    body: bytes
    subprotocol: str | None

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        return values[0] if values else None

    def send(self, message: str | bytes) -> None:
        raise NotImplementedError

    def send_fragments(self, parts: list) -> None:
        raise NotImplementedError

    def recv(self) -> str | bytes:
        """The next message; Closed once the server has closed."""
        raise NotImplementedError

    def close(self, code: int = 1000, reason: str = "") -> None:
        raise NotImplementedError

    def idle(self, seconds: float) -> None:
        """Wait, answering the server's pings meanwhile (messages that come are kept for recv)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Vanish without a close frame (HTTP/1.1: the TCP connection; HTTP/2: the whole connection)."""
        raise NotImplementedError

    def end(self) -> None:
        """Let go of the connection."""
        raise NotImplementedError


def open_session(transport: str, port: int, path: str, subprotocols=(), deflate: bool = True) -> Session:
    """`transport` is "http1.1" or "h2-<codec>" (the codec only names the server's side)."""
    if transport == "http1.1":
        return H1Session(port, path, subprotocols, deflate)
    return H2Session(port, path, subprotocols, deflate)


class H1Session(Session):
    def __init__(self, port: int, path: str, subprotocols, deflate: bool) -> None:
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        self.conn = None
        try:
            self.conn = connect(f"ws://127.0.0.1:{port}{path}", subprotocols=list(subprotocols) or None,
                                compression="deflate" if deflate else None, max_size=None,
                                open_timeout=10).__enter__()  # (entered: its close is end())
        except InvalidStatus as exc:
            response = exc.response
            self.accepted, self.body, self.subprotocol = False, bytes(response.body or b""), None
        else:
            response = self.conn.response
            self.accepted, self.body, self.subprotocol = True, b"", self.conn.subprotocol
        self.status = response.status_code
        self.headers = [(name.lower(), value) for name, value in response.headers.raw_items()]

    def send(self, message: str | bytes) -> None:
        self.conn.send(message)

    def send_fragments(self, parts: list) -> None:
        self.conn.send(parts)

    def recv(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            return self.conn.recv(timeout=10)
        except ConnectionClosed as exc:
            close = exc.rcvd
            raise Closed(close.code if close else 1006, close.reason if close else "") from None

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.conn.close(code, reason)

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)  # (the client's own thread answers pings)

    def abort(self) -> None:
        self.conn.socket.shutdown(socket.SHUT_RDWR)

    def end(self) -> None:
        if self.conn is not None:
            self.conn.close()


class H2Session(Session):
    def __init__(self, port: int, path: str, subprotocols, deflate: bool) -> None:
        self.client = H2Client(port)
        extra = [("sec-websocket-protocol", ", ".join(subprotocols))] if subprotocols else []
        self.ws = WebSocket(self.client, path, extra=extra, deflate=deflate)
        stream = self.ws.stream
        if stream.status is None:
            raise AssertionError(f"the server reset the stream: error code {stream.reset}")
        self.status = stream.status or 0
        self.headers = [(name.decode(), value.decode()) for name, value in stream.header_list]
        self.accepted = self.status == 200
        if not self.accepted:  # (after a complete refusal, a RST_STREAM NO_ERROR may end the stream)
            self.client.pump(lambda: stream.ended or stream.reset is not None)
        self.body = b"" if self.accepted else stream.body
        self.subprotocol = self.header("sec-websocket-protocol")
        self.pending: list = []

    def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.ws.send("send_text", message.encode())
        else:
            self.ws.send("send_binary", message)

    def send_fragments(self, parts: list) -> None:
        method = "send_text" if isinstance(parts[0], str) else "send_binary"
        for index, part in enumerate(parts):
            data = part.encode() if isinstance(part, str) else part
            self.ws.send(method if index == 0 else "send_continuation", data, index == len(parts) - 1)

    def _next_frame(self):
        if not self.pending:
            self.client.pump(lambda: bool(self.pending.extend(self.ws._take()) or self.pending))
            self.ws.flush()  # the protocol's own answers: pongs, the close echo
        return self.pending.pop(0)

    def recv(self) -> str | bytes:
        from websockets.frames import Close, Opcode

        parts: list[bytes] = []
        opcode = None
        while True:
            frame = self._next_frame()
            if frame.opcode == Opcode.CLOSE:
                close = Close.parse(frame.data) if frame.data else None
                raise Closed(close.code if close else 1005, close.reason if close else "")
            if frame.opcode in (Opcode.PING, Opcode.PONG):
                continue
            opcode = opcode or frame.opcode
            parts.append(frame.data)
            if frame.fin:
                data = b"".join(parts)
                return data.decode() if opcode == Opcode.TEXT else data

    def close(self, code: int = 1000, reason: str = "") -> None:
        from websockets.frames import Opcode

        self.ws.send("send_close", code, reason)
        while self._next_frame().opcode != Opcode.CLOSE:
            pass
        self.client.pump(lambda: self.ws.stream.ended or self.ws.stream.reset is not None)
        if self.ws.stream.reset is None:
            self.ws.end()  # (the client side ends its stream after the close handshake)

    def idle(self, seconds: float) -> None:
        client, deadline = self.client, time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            client.sock.settimeout(left)
            try:
                data = client.sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                raise AssertionError("the server closed the connection")
            for event in client.conn.receive_data(data):
                client._on(event)
            client.flush()
            self.pending.extend(self.ws._take())
            self.ws.flush()  # the pongs
        client.sock.settimeout(10)

    def frame_unanswered(self) -> tuple[int, bytes]:
        """The next frame, leaving the protocol's answer (a pong, the close echo) unsent."""
        if not self.pending:
            self.client.pump(lambda: bool(self.pending.extend(self.ws._take()) or self.pending))
        frame = self.pending.pop(0)
        return frame.opcode, frame.data

    def abort(self) -> None:
        self.client.sock.close()

    def end(self) -> None:
        self.client.close()
