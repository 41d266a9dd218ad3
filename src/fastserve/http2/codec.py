"""The one contract between an HTTP/2 codec library and the server: events in, calls out.

A codec is sans-I/O: `receive_data(bytes)` returns a list of the small frozen events below, the
`send_*` calls queue frames, and `data_to_send()` hands back the bytes to write. Two adapters
implement it (zttp_codec.py, the compiled default; h2_codec.py, the pure-Python fallback and the
reference of the differential tests); every call into either library stays in its adapter.

Both adapters agree on what they refuse (tests/test_h2_codec.py has the table):
- a malformed request or trailer header block (RFC 9113 8.2-8.3: uppercase or invalid names,
  NUL/CR/LF in values, connection-specific fields, TE other than "trailers", pseudo-header
  missing, duplicated, unknown or after a regular field, empty :path, :authority != Host, a plain
  CONNECT) is a *stream* error: the codec queues RST_STREAM(PROTOCOL_ERROR) and reports
  `StreamReset`, and the connection carries on;
- a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS is refused with RST_STREAM(REFUSED_STREAM),
  also reported as `StreamReset`;
- a connection error (bad frame, HPACK bomb, CONTINUATION flood, flow-control violation...)
  raises `H2ProtocolError` carrying the HTTP/2 error code, after the codec has queued the GOAWAY:
  the caller writes `data_to_send()` and closes the transport.

What the codecs hand over already validated (pseudo-headers exactly once and first, names
lowercase) is not checked again by the server; what is left to http2/semantics.py is meaning,
not syntax: the method, the target form, Host, cookies, the scope.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Protocol

# RFC 9113 7: the error codes the server itself sends or compares.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

# RFC 9113 6.5.2 and RFC 8441 3: SETTINGS identifiers, as keys of SettingsChanged.changes.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8


@dataclass(frozen=True)
class H2Settings:
    """What the server advertises in its first SETTINGS frame (and enforces).

    The defaults are the values zttp 0.0.35 advertises and cannot change; the h2 adapter can
    advertise any valid value (see `Codec.supports`).
    """

    max_concurrent_streams: int = 128
    initial_window_size: int = 65_535
    max_frame_size: int = 16_384
    max_header_list_size: int = 65_536
    header_table_size: int = 4_096
    enable_connect_protocol: bool = True  # RFC 8441: WebSockets over HTTP/2

    def __post_init__(self) -> None:
        for name, low, high in _SETTING_RANGES:
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"HTTP/2 {name} must be {low} to {high}, not {value}")

    def defaults_but_connect_protocol(self) -> bool:
        """These are the defaults, extended CONNECT aside: all that zttp can advertise (it always
        offers extended CONNECT; see zttp_codec.py supports() and the config check)."""
        return replace(self, enable_connect_protocol=True) == H2Settings()


_SETTING_RANGES = (  # RFC 9113 6.5.2 (and at least one stream, so the server can serve)
    ("max_concurrent_streams", 1, 2**31 - 1),
    ("initial_window_size", 0, 2**31 - 1),
    ("max_frame_size", 2**14, 2**24 - 1),
    ("max_header_list_size", 1, 2**31 - 1),
    ("header_table_size", 0, 2**31 - 1),
)


# ---- Events (what `receive_data` returns) ----


# RequestHeaders and Data come once or more per request: they are not frozen (treat them as
# immutable all the same) because a frozen dataclass costs ~0.8 µs to build against ~0.2 µs, a
# tenth of the zttp adapter's whole per-request cost (benchmarks/h2codec.py).


@dataclass(slots=True)
class RequestHeaders:
    """A request head, already validated by the codec.

    `headers` are the regular fields in received order, names lowercase. The pseudo-headers are
    fields of their own because zttp hands them over that way: `target` is :path, `protocol` is
    :protocol (extended CONNECT, RFC 8441) or None, and :authority is folded into a `host` field
    (appended when the client sent no Host). :scheme is not carried: zttp does not expose it, so
    the scope's scheme comes from the connection (TLS or not), as on HTTP/1.1.
    """

    stream_id: int
    method: bytes
    target: bytes
    protocol: bytes | None
    headers: list[tuple[bytes, bytes]]
    end_stream: bool


@dataclass(slots=True)
class Data:
    """Request body bytes. Hand `flow_controlled_length` (it counts padding) back through
    `acknowledge_received_data` as the application takes the body."""

    stream_id: int
    data: bytes
    flow_controlled_length: int
    end_stream: bool


@dataclass(frozen=True, slots=True)
class Trailers:
    """Request trailers; they always end the stream."""

    stream_id: int
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream is gone: the peer sent RST_STREAM, or the codec refused the stream (and has
    queued the RST_STREAM itself). zttp does not say which, so neither adapter does. It may come
    again for a stream already reset (zttp answers each frame that arrives on a stream it reset
    with RST_STREAM(STREAM_CLOSED) and reports it): ignore resets of unknown streams."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """The peer granted send credit on a stream, or on the connection (stream_id 0)."""

    stream_id: int
    increment: int


@dataclass(frozen=True, slots=True)
class SettingsChanged:
    """The peer's SETTINGS (already acknowledged by the codec): identifier -> value. A change
    of SETTINGS_INITIAL_WINDOW_SIZE moves every stream's send window. (The peer's ACK of our
    SETTINGS is not an event: zttp does not report it, and nothing here waits for it.)"""

    changes: dict[int, int]


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged; the codec has queued the PING ACK."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PingAcked:
    data: bytes


@dataclass(frozen=True, slots=True)
class QuietFrames:
    """`count` frames of the last read that the adapter handled without any other event: PRIORITY,
    empty DATA without END_STREAM, SETTINGS or PING ACKs, unknown frame types, frames on a stream
    that is over. They cost the h2 codec ~10 µs each, so the h2 adapter reports them (at most
    once per read) for --http2-max-control-frames (http2/flood.py). zttp handles them in ~10 ns,
    less than reading their bytes costs, and does not report them, so neither does its adapter."""

    count: int


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The peer sent GOAWAY: streams above `last_stream_id` were not and will not be processed.
    Close the connection (h2 accepts no further frame after it; zttp would)."""

    error_code: int
    last_stream_id: int


Event = (
    RequestHeaders
    | Data
    | Trailers
    | StreamReset
    | WindowUpdated
    | SettingsChanged
    | PingReceived
    | PingAcked
    | QuietFrames
    | ConnectionTerminated
)


# ---- Errors ----


class H2ProtocolError(Exception):
    """The peer broke HTTP/2 at the connection level. The GOAWAY carrying `error_code` is already
    queued: write `data_to_send()`, then close."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


class CodecUsageError(Exception):
    """The server asked the codec for something it cannot send (invalid response headers, DATA
    beyond the send window...): a bug on our side, never the client's."""


class StreamClosed(CodecUsageError):
    """Sending on a stream that is already closed or reset (for instance the client reset it
    while the application was still answering): drop what was meant for it."""


class CodecCannotExpress(ValueError):
    """The chosen codec library cannot do what was asked (a SETTINGS value it does not let us
    choose, a runtime SETTINGS change...)."""


# ---- The adapter contract ----


class Codec(Protocol):
    """One server-side HTTP/2 connection's codec. Not thread-safe; no I/O."""

    local_settings: H2Settings
    # Streams a connection can carry before the library ends it (zttp: 4096), or None: the
    # connection should send a graceful GOAWAY (close_connection()) before reaching it.
    max_streams_per_connection: ClassVar[int | None]

    def __init__(self, settings: H2Settings = ...) -> None: ...

    @classmethod
    def supports(cls, settings: H2Settings) -> bool:
        """Whether this codec can advertise and enforce `settings`."""
        ...

    def initiate_connection(self) -> None:
        """Queue the server preface (our SETTINGS)."""

    def initiate_upgrade(
        self, settings_header: bytes, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> list[Event]:
        """For an h2c upgrade, before writing the 101: apply the client's HTTP2-Settings value,
        queue our preface and return the upgraded request as stream 1 (half-closed: the HTTP/1.1
        body, if any, is not carried). `headers`: lowercase names, without the connection-specific
        fields of the HTTP/1.1 request (Connection, Upgrade, HTTP2-Settings). An invalid
        HTTP2-Settings value raises H2ProtocolError: answer 400 on HTTP/1.1 and drop this codec."""

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the transport; raises H2ProtocolError on a connection error."""

    def send_headers(
        self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        """The response head (the status apart, as zttp takes it, rather than a :status field). `headers`: lowercase names, no connection-specific fields.
        Once per stream and before any DATA: the caller's cycle guarantees it (zttp does not
        check; h2 does)."""

    def send_informational(self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """An interim 1xx head (100 Continue, 103 Early Hints)."""

    def send_response(self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        """A whole response at once (the common small one): the head, then `body` (not empty) as
        DATA ending the stream, when the windows take all of it: True. Otherwise nothing is
        queued and it returns False (a closed stream too): send_headers and send_data then say why."""

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Body bytes, at most `send_window(stream_id)` of them (CodecUsageError otherwise);
        the codec cuts them into frames of at most `max_outbound_frame_size`."""

    def send_trailers(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Trailers; they end the stream."""

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None: ...

    def acknowledge_received_data(self, stream_id: int, length: int) -> None:
        """Return receive-window credit for `length` flow-controlled bytes the application took,
        or that the server dropped: a body never read (stream reset, response sent early) must be
        acknowledged too, or the connection's window runs dry for every stream (h2)."""

    def send_window(self, stream_id: int) -> int:
        """How many body bytes may be sent on the stream now (the lesser of the stream's and the
        connection's windows; 0 for a closed stream). Watch WindowUpdated and SettingsChanged.
        (The client's receive window is not exposed: zttp keeps it to itself.)"""

    @property
    def max_outbound_frame_size(self) -> int: ...

    def update_settings(self, changes: dict[int, int]) -> None:
        """Advertise new SETTINGS mid-connection (CodecCannotExpress where unsupported)."""

    def close_connection(self, error_code: int = NO_ERROR, last_stream_id: int | None = None) -> None:
        """Queue GOAWAY; `last_stream_id` defaults to the highest stream the codec accepted (or
        to the previous GOAWAY's). With NO_ERROR it is a graceful shutdown: the streams up to
        `last_stream_id` go on (finish them, then close the transport) and any newer stream is
        refused (RST_STREAM) without being reported. With an error code the connection is over."""

    def data_to_send(self) -> bytes:
        """Take the bytes queued for the transport."""
