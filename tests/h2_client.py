"""In-memory HTTP/2 clients for the codec tests: an h2 client wired to a server codec, and raw frames.

`Pair` joins a real h2 client connection (client_side=True) to one server codec; `RawClient`
builds frames with hyperframe and one HPACK encoder, for what no well-behaved client sends.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.settings
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"example.com")]


def codecs() -> list:
    """The adapters to parametrize over: zttp only where it installs (CPython 3.11+)."""
    from fastserve.http2.h2_codec import H2Codec

    try:
        from fastserve.http2.zttp_codec import ZttpCodec
    except ImportError:
        return [H2Codec]
    return [ZttpCodec, H2Codec]


def parse_frames(data: bytes) -> list[Frame]:
    frames = []
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


def goaway_codes(data: bytes) -> list[int]:
    return [f.error_code for f in parse_frames(data) if isinstance(f, GoAwayFrame)]


def rst_codes(data: bytes) -> dict[int, int]:
    return {f.stream_id: f.error_code for f in parse_frames(data) if isinstance(f, RstStreamFrame)}


class Pair:
    """An h2 client and a server codec, exchanging bytes in memory."""

    def __init__(self, server, validate: bool = True, **client_settings: int) -> None:
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
        self.client = h2.connection.H2Connection(config=config)
        if client_settings:
            self.client.local_settings = h2.settings.Settings(
                client=True, initial_values={int(k): v for k, v in client_settings.items()}
            )
        self.server = server

    def handshake(self) -> list:
        self.client.initiate_connection()
        self.server.initiate_connection()
        events = self.to_server()
        self.to_client()
        self.to_server()  # the client's SETTINGS ACK
        return events

    def to_server(self) -> list:
        return self.server.receive_data(self.client.data_to_send())

    def to_client(self) -> list:
        return self.client.receive_data(self.server.data_to_send())

    def request(self, stream_id: int, headers=GET, body: bytes = b"", end_stream: bool = True) -> list:
        self.client.send_headers(stream_id, headers, end_stream=end_stream and not body)
        if body:
            self.client.send_data(stream_id, body, end_stream=end_stream)
        return self.to_server()


class RawClient:
    """Frames as bytes, after a client preface with an empty SETTINGS frame."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def preface(self) -> bytes:
        return PREFACE + SettingsFrame(0).serialize()

    def headers(self, stream_id: int, fields, end_stream: bool = True, end_headers: bool = True) -> bytes:
        frame = HeadersFrame(stream_id)
        frame.data = self.encoder.encode(fields)
        if end_headers:
            frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    @staticmethod
    def continuation(stream_id: int, block: bytes, end_headers: bool = False) -> bytes:
        frame = ContinuationFrame(stream_id)
        frame.data = block
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame.serialize()

    @staticmethod
    def data(stream_id: int, payload: bytes, end_stream: bool = False) -> bytes:
        frame = DataFrame(stream_id)
        frame.data = payload
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    @staticmethod
    def rst(stream_id: int, code: int) -> bytes:
        frame = RstStreamFrame(stream_id)
        frame.error_code = code
        return frame.serialize()

    @staticmethod
    def window_update(stream_id: int, increment: int) -> bytes:
        frame = WindowUpdateFrame(stream_id)
        frame.window_increment = increment
        return frame.serialize()

    @staticmethod
    def settings(**values: int) -> bytes:
        frame = SettingsFrame(0)
        frame.settings = {int(k.removeprefix("s")): v for k, v in values.items()}
        return frame.serialize()

    @staticmethod
    def ping(payload: bytes = b"12345678", ack: bool = False) -> bytes:
        frame = PingFrame(0)
        frame.opaque_data = payload
        if ack:
            frame.flags.add("ACK")
        return frame.serialize()

    @staticmethod
    def goaway(code: int, last_stream_id: int = 0) -> bytes:
        frame = GoAwayFrame(0)
        frame.error_code = code
        frame.last_stream_id = last_stream_id
        return frame.serialize()

    @staticmethod
    def priority(stream_id: int, depends_on: int = 0) -> bytes:
        frame = PriorityFrame(stream_id)
        frame.depends_on = depends_on
        return frame.serialize()

    @staticmethod
    def oversized_frame(stream_id: int, size: int) -> bytes:
        return size.to_bytes(3, "big") + b"\x00\x00" + stream_id.to_bytes(4, "big") + b"x" * size
