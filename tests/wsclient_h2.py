"""A WebSocket client over HTTP/2 (RFC 8441) against a real server: an `h2` library connection on
a real socket (cleartext prior knowledge, or TLS with ALPN h2) doing extended CONNECTs, with
websockets' sans-I/O ClientProtocol framing on each stream. What the `websockets` client and
tests/wsclient.py give the HTTP/1.1 tests.
"""

from __future__ import annotations

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import Frame
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.headers import parse_extension
from websockets.protocol import State
from websockets.uri import parse_uri


class Stream:
    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
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
