"""The HTTP/2 codec on h2 (pure Python): the fallback, and the reference of the differential tests.

h2 does the framing, HPACK, stream states, flow control and SETTINGS; the adapter makes it refuse
what zttp refuses, the same way (codec.py lists the rules):
- h2 treats a malformed header block as a connection error (GOAWAY); RFC 9113 8.1.1 makes it a
  stream error, which is what zttp does. So h2's own inbound validation is off, `_request_fields`
  and `_trailer_problem` check the same rules, and the adapter resets the stream.
- h2 treats a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS as a connection error; RFC 9113
  5.1.2 wants a stream error. `_lift_stream_limit` (the one place replacing h2's settings object
  after the preface) lets h2 accept it, and the adapter refuses it with REFUSED_STREAM.
- h2's close_connection() refuses every later frame, even on the streams a graceful GOAWAY
  promises to finish, so the adapter writes a graceful GOAWAY itself and keeps h2 open.
- h2 checks a frame's length against SETTINGS_MAX_FRAME_SIZE only once the whole frame has
  arrived, so a frame header announcing 16 MiB made it buffer up to that much before refusing,
  and a client that sent only the header got no answer. `_FrameLengths` reads the frame headers
  as they come and refuses an oversized frame at once (GOAWAY FRAME_SIZE_ERROR, RFC 9113 4.2).
- Events h2 reports separately (StreamEnded, SettingsAcknowledged, PriorityUpdated, unknown
  frames, empty DATA frames) are folded in or dropped; the frames that made no progress are
  counted and reported as one QuietFrames per read (for --http2-max-control-frames).

Known divergences kept (h2's choice is valid or h2 cannot be told otherwise; the differential
test lists them): an undecodable HPACK block is PROTOCOL_ERROR here, COMPRESSION_ERROR on zttp;
a CONTINUATION flood is PROTOCOL_ERROR here, ENHANCE_YOUR_CALM on zttp; RST_STREAM on an idle
stream above the highest opened one is ignored by h2 (zttp: GOAWAY PROTOCOL_ERROR); trailers
without END_STREAM are a connection error in h2 whatever the validation settings (zttp: a stream
error); WINDOW_UPDATE of 0 on a stream is a connection error here (zttp: a stream error); a
PRIORITY frame making a stream depend on itself is a connection error here (zttp ignores
PRIORITY); a GOAWAY from the client closes h2 to any later frame (zttp reads on).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.exceptions
from hyperframe.frame import (
    DataFrame,
    ExtensionFrame,
    GoAwayFrame,
    HeadersFrame,
    PriorityFrame,
    SettingsFrame,
)

from .codec import (
    CANCEL,
    FRAME_SIZE_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    SETTINGS_ENABLE_CONNECT_PROTOCOL,
    SETTINGS_HEADER_TABLE_SIZE,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    SETTINGS_MAX_HEADER_LIST_SIZE,
    Codec,
    CodecCannotExpress,
    CodecUsageError,
    ConnectionTerminated,
    Data,
    Event,
    H2ProtocolError,
    H2Settings,
    PingAcked,
    PingReceived,
    QuietFrames,
    RequestHeaders,
    SettingsChanged,
    StreamClosed,
    StreamReset,
    Trailers,
    WindowUpdated,
)

_DEFAULT_SETTINGS = H2Settings()
_UNLIMITED_STREAMS = 2**31 - 1
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority", b":protocol"})
_FIELD_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9a-z-]+\Z")  # a lowercase token (RFC 9110 5.1)
# RFC 9113 8.2.1 forbids NUL, CR, LF and surrounding whitespace; zttp also refuses the other
# controls and DEL (RFC 9110 5.5 field-value), so the h2 adapter does too.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|\A[ \t]|[ \t]\Z")
_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*=*\Z")  # RFC 9113 3.2.1 (token68, base64url)
_STATUS = {code: str(code).encode() for code in range(100, 600)}


class _QuietCountingH2(h2.connection.H2Connection):
    """h2's connection, counting the frames that make no progress (codec.QuietFrames): ~10 µs
    each in h2, and most surface as no event the server sees (a frame on a stream that is over,
    PRIORITY, an empty DATA frame, an ACK, an unknown type). WINDOW_UPDATE, PING and SETTINGS
    surface as events: the connection counts those."""

    quiet = 0
    crowd = _UNLIMITED_STREAMS  # H2Codec sets it: see _check_crowd

    def _receive_frame(self, frame: Any) -> list:  # Any: `type(x) is` does not narrow
        kind = type(frame)
        if kind is HeadersFrame and len(self.streams) > 2 * self.crowd:
            self._check_crowd()
        events = super()._receive_frame(frame)
        if not events or kind is PriorityFrame or kind is ExtensionFrame:
            self.quiet += 1
        elif kind is DataFrame:
            if not frame.data and "END_STREAM" not in frame.flags:
                self.quiet += 1
        elif kind is SettingsFrame and "ACK" in frame.flags:
            self.quiet += 1
        return events

    def _check_crowd(self) -> None:
        """h2 opens every stream of a read before the adapter can refuse those over the limit,
        and counts its open streams by walking them all, per new stream: thousands of HEADERS in
        one read (empty ones too) cost it seconds (5,000: ~11 s). More than `crowd` open at once
        (twice the advertised limit: a client that ignores it) ends the connection, as zttp does
        (ENHANCE_YOUR_CALM). Walking them also forgets the closed ones, so this runs rarely."""
        if self.open_inbound_streams > self.crowd:
            raise h2.exceptions.DenialOfServiceError(f"more than {self.crowd} streams opened at once")


_PREFACE_LENGTH = 24  # the client connection preface, "PRI * HTTP/2.0..." (RFC 9113 3.4)


class _FrameLengths:
    """Follows the frame boundaries of what the client sends (after the 24-byte preface) and
    reports the first frame longer than ``limit``, from its 9-byte header alone."""

    __slots__ = ("limit", "skip", "header")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.skip = _PREFACE_LENGTH  # bytes before the next frame header
        self.header = b""  # the start of a frame header cut by the end of a read

    def feed(self, data: bytes) -> int | None:
        """The length of an oversized frame whose header is in ``data``, else None."""
        position, size = 0, len(data)
        while True:
            if self.skip:
                step = min(self.skip, size - position)
                self.skip -= step
                position += step
                if self.skip:
                    return None
            missing = 9 - len(self.header)
            if size - position < missing:
                self.header += data[position:]
                return None
            header = self.header + data[position:position + missing]
            position += missing
            self.header = b""
            length = int.from_bytes(header[:3], "big")
            if length > self.limit:
                return length
            self.skip = length


class H2Codec:
    max_streams_per_connection: ClassVar[int | None] = None

    def __init__(self, settings: H2Settings = _DEFAULT_SETTINGS) -> None:
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,  # checked here, as stream errors
            normalize_inbound_headers=False,  # keeps cookies apart, as zttp does
            validate_outbound_headers=True,
            normalize_outbound_headers=False,
        )
        self._h2 = _QuietCountingH2(config=config)
        self._h2.crowd = 2 * settings.max_concurrent_streams
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values=_h2_values(settings))
        # h2 sizes these from its defaults until the client acks our SETTINGS; ours hold at once.
        self._h2.max_inbound_frame_size = settings.max_frame_size
        self._h2.decoder.max_header_list_size = settings.max_header_list_size
        self.local_settings = settings
        # Streams the adapter reset during the current read: h2 had already turned the rest of
        # the read into events, which are dropped. (Later reads: h2 ignores such streams.)
        self._refused: set[int] = set()
        self._goaway_last: int | None = None  # last_stream_id of our graceful GOAWAY
        self._later_requests = 0  # requests of the current read not converted yet
        self._pending = b""  # h2's output, then the graceful GOAWAY written here
        self._frames = _FrameLengths(settings.max_frame_size)

    @classmethod
    def supports(cls, settings: H2Settings) -> bool:
        return True

    def initiate_connection(self) -> None:
        self._h2.initiate_connection()
        self._after_preface()

    def initiate_upgrade(
        self, settings_header: bytes, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> list[Event]:
        if not _BASE64URL.match(settings_header):  # h2's decoder skips what is not base64
            raise H2ProtocolError(PROTOCOL_ERROR, "invalid HTTP2-Settings: not base64url")
        try:
            self._h2.initiate_upgrade_connection(settings_header)
        except (h2.exceptions.ProtocolError, hyperframe.exceptions.HyperframeError, ValueError) as exc:
            # ValueError: binascii.Error, not base64url
            raise H2ProtocolError(PROTOCOL_ERROR, f"h2c upgrade refused: {exc}") from None
        self._after_preface()
        return [RequestHeaders(1, method, target, None, headers, True)]

    def _after_preface(self) -> None:
        # The connection window holds every stream's full window: a stream whose app does not
        # take its body (its credit withheld) then never stalls the others (hypercorn's bug).
        settings = self.local_settings
        grow = min(2**31 - 1, settings.max_concurrent_streams * settings.initial_window_size) - 65_535
        if grow > 0:  # the connection window only grows by WINDOW_UPDATE (RFC 9113 6.9.2)
            self._h2.increment_flow_control_window(grow)
        self._lift_stream_limit()

    def _lift_stream_limit(self) -> None:
        """Our SETTINGS are on the wire; from now on h2 must not enforce the stream limit as a
        connection error, the adapter enforces it as a stream error (module docstring)."""
        values = _h2_values(self.local_settings)
        values[SETTINGS_MAX_CONCURRENT_STREAMS] = _UNLIMITED_STREAMS
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values=values)

    # ---- receiving ----

    def receive_data(self, data: bytes) -> list[Event]:
        oversized = self._frames.feed(data)
        if oversized is not None:
            self._h2.close_connection(FRAME_SIZE_ERROR, last_stream_id=self._h2.highest_inbound_stream_id)
            raise H2ProtocolError(FRAME_SIZE_ERROR, f"a frame of {oversized} bytes, over SETTINGS_MAX_FRAME_SIZE")
        try:
            h2_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:  # h2 has queued the GOAWAY
            raise H2ProtocolError(int(exc.error_code), str(exc)) from None
        events: list[Event] = []
        refused = self._refused
        refused.clear()
        # h2 has opened every stream of this read already; the limit is checked as each request
        # came (the streams opened last are the ones refused), so count those still to come.
        self._later_requests = sum(type(event) is h2.events.RequestReceived for event in h2_events)
        for event in h2_events:
            stream_id = getattr(event, "stream_id", 0)
            if stream_id in refused:
                continue
            converted = self._convert(event)
            if converted is not None:
                events.append(converted)
        if self._h2.quiet:
            events.append(QuietFrames(self._h2.quiet))
            self._h2.quiet = 0
        return events

    def _convert(self, event: Any) -> Event | None:  # Any: `type(x) is` does not narrow
        kind = type(event)
        if kind is h2.events.RequestReceived:
            return self._request(event)
        if kind is h2.events.DataReceived:
            end_stream = event.stream_ended is not None
            if not (event.flow_controlled_length or end_stream):
                return None  # an empty DATA frame: nothing to hand over (zttp reports none)
            return Data(event.stream_id, event.data, event.flow_controlled_length, end_stream)
        if kind is h2.events.TrailersReceived:
            problem = _trailer_problem(event.headers, event.stream_ended is not None)
            if problem:
                return self._refuse(event.stream_id, PROTOCOL_ERROR)
            return Trailers(event.stream_id, list(event.headers))
        if kind is h2.events.StreamReset:
            return StreamReset(event.stream_id, int(event.error_code))
        if kind is h2.events.WindowUpdated:
            return WindowUpdated(event.stream_id, event.delta)
        if kind is h2.events.RemoteSettingsChanged:
            return SettingsChanged({int(k): v.new_value for k, v in event.changed_settings.items()})
        if kind is h2.events.PingReceived:
            return PingReceived(event.ping_data)
        if kind is h2.events.PingAckReceived:
            return PingAcked(event.ping_data)
        if kind is h2.events.ConnectionTerminated:
            return ConnectionTerminated(int(event.error_code), event.last_stream_id)
        return None  # StreamEnded (folded into the flags), SettingsAcknowledged, priority...

    def _request(self, event: Any) -> Event | None:
        stream_id = event.stream_id
        if self._goaway_last is not None and stream_id > self._goaway_last:
            self._refuse(stream_id, REFUSED_STREAM)
            return None  # after our GOAWAY: not a request the server will hear of
        self._later_requests -= 1
        if self._h2.open_inbound_streams - self._later_requests > self.local_settings.max_concurrent_streams:
            return self._refuse(stream_id, REFUSED_STREAM)
        fields = _request_fields(event.headers, self.local_settings.enable_connect_protocol)
        if fields is None:
            return self._refuse(stream_id, PROTOCOL_ERROR)
        method, target, protocol, headers = fields
        return RequestHeaders(stream_id, method, target, protocol, headers, event.stream_ended is not None)

    def _refuse(self, stream_id: int, error_code: int) -> StreamReset:
        try:
            self._h2.reset_stream(stream_id, error_code)
        except h2.exceptions.StreamClosedError:
            pass  # the client reset it later in the same read: nothing more to send
        self._refused.add(stream_id)
        return StreamReset(stream_id, error_code)

    # ---- sending ----

    def send_headers(
        self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        _check_outbound(headers)
        status_field = _STATUS.get(status) or str(status).encode()
        self._call(self._h2.send_headers, stream_id, [(b":status", status_field), *headers], end_stream)

    def send_response(self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        if len(body) > self.send_window(stream_id):  # (0 for a closed stream)
            return False
        self.send_headers(stream_id, status, headers)
        self.send_data(stream_id, body, True)
        return True

    def send_informational(self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if not 100 <= status < 200 or status == 101:
            raise CodecUsageError(f"{status} is not an informational status")
        self.send_headers(stream_id, status, headers)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if data and len(data) > self.send_window(stream_id):
            if not self._open(stream_id):
                raise StreamClosed(f"stream {stream_id} is closed")
            raise CodecUsageError(f"{len(data)} bytes exceed the send window on stream {stream_id}")
        size = self._h2.max_outbound_frame_size
        view = memoryview(data)
        while len(view) > size:
            self._call(self._h2.send_data, stream_id, bytes(view[:size]), False)
            view = view[size:]
        self._call(self._h2.send_data, stream_id, bytes(view), end_stream)

    def _open(self, stream_id: int) -> bool:
        stream = self._h2.streams.get(stream_id)
        return stream is not None and stream.open

    def send_trailers(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        _check_outbound(headers)
        self._call(self._h2.send_headers, stream_id, headers, True)

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None:
        self._call(self._h2.reset_stream, stream_id, error_code)

    def _call(self, method: Any, stream_id: int, *args: Any) -> None:
        try:
            method(stream_id, *args)
        except h2.exceptions.StreamClosedError:
            raise StreamClosed(f"stream {stream_id} is closed") from None
        except h2.exceptions.ProtocolError as exc:
            if not self._open(stream_id):
                raise StreamClosed(f"stream {stream_id} is closed") from None
            raise CodecUsageError(str(exc)) from None

    def acknowledge_received_data(self, stream_id: int, length: int) -> None:
        if length:
            self._h2.acknowledge_received_data(length, stream_id)

    def send_window(self, stream_id: int) -> int:
        stream = self._h2.streams.get(stream_id)
        if stream is None or stream.closed:
            return 0
        try:
            return max(0, self._h2.local_flow_control_window(stream_id))
        except h2.exceptions.NoSuchStreamError:  # closed, or never opened
            return 0

    @property
    def max_outbound_frame_size(self) -> int:
        return self._h2.max_outbound_frame_size

    def update_settings(self, changes: dict[int, int]) -> None:
        if SETTINGS_MAX_CONCURRENT_STREAMS in changes:
            # h2 would enforce the new value itself, as a connection error (module docstring).
            raise CodecCannotExpress("changing SETTINGS_MAX_CONCURRENT_STREAMS mid-connection")
        self._h2.update_settings(changes)

    def close_connection(self, error_code: int = NO_ERROR, last_stream_id: int | None = None) -> None:
        if last_stream_id is None:
            last_stream_id = self._goaway_last
        if last_stream_id is None:
            last_stream_id = self._h2.highest_inbound_stream_id
        if error_code != NO_ERROR:
            self._h2.close_connection(error_code, last_stream_id=last_stream_id)
            return
        # h2's close_connection would refuse every later frame, even on the streams we promise
        # to finish: a graceful GOAWAY is written here and h2 keeps its state.
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = last_stream_id
        goaway.error_code = NO_ERROR
        self._pending += self._h2.data_to_send() + goaway.serialize()
        self._goaway_last = last_stream_id

    def data_to_send(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending + self._h2.data_to_send(), b""
            return data
        return self._h2.data_to_send()


def _h2_values(settings: H2Settings) -> dict[Any, int]:  # Any: h2 types keys as SettingCodes
    return {
        SETTINGS_HEADER_TABLE_SIZE: settings.header_table_size,
        SETTINGS_MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
        SETTINGS_INITIAL_WINDOW_SIZE: settings.initial_window_size,
        SETTINGS_MAX_FRAME_SIZE: settings.max_frame_size,
        SETTINGS_MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
        SETTINGS_ENABLE_CONNECT_PROTOCOL: int(settings.enable_connect_protocol),
    }


# ---- request syntax (RFC 9113 8.2-8.3), the rules zttp applies ----


def _field_problem(name: bytes, value: bytes) -> bool:
    if not _FIELD_NAME.match(name) or _BAD_VALUE.search(value):
        return True
    if name in _CONNECTION_SPECIFIC:
        return True
    return name == b"te" and value != b"trailers"


def _check_outbound(fields: list[tuple[bytes, bytes]]) -> None:
    """The rules zttp applies to what we send; h2's outbound validation lets uppercase names and
    CR/LF in values through."""
    for name, value in fields:
        if _field_problem(name, value):
            raise CodecUsageError(f"invalid response field {name!r}: {value!r}")


def _request_fields(
    fields: list[tuple[bytes, bytes]], connect_protocol: bool
) -> tuple[bytes, bytes, bytes | None, list[tuple[bytes, bytes]]] | None:
    """(method, target, protocol, regular fields with :authority as Host), or None: malformed."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[bytes, bytes]] = []
    host = None
    for name, value in fields:
        if name[:1] == b":":
            if headers or name not in _REQUEST_PSEUDO or name in pseudo:
                return None
            if _BAD_VALUE.search(value):
                return None
            pseudo[name] = value
            continue
        if _field_problem(name, value):
            return None
        if name == b"host":
            host = value
        headers.append((name, value))
    method = pseudo.get(b":method")
    target = pseudo.get(b":path")
    protocol = pseudo.get(b":protocol")
    if method is None or not target or b":scheme" not in pseudo:
        return None  # also a plain CONNECT (RFC 9113 8.5), which zttp refuses too
    if protocol is not None and (method != b"CONNECT" or not connect_protocol):
        return None
    authority = pseudo.get(b":authority")
    if authority is not None:
        if host is None:
            headers.append((b"host", authority))
        elif host != authority:
            return None
    return method, target, protocol, headers


def _trailer_problem(fields: list[tuple[bytes, bytes]], end_stream: bool) -> bool:
    if not end_stream:
        return True
    return any(name[:1] == b":" or _field_problem(name, value) for name, value in fields)


if TYPE_CHECKING:  # mypy checks that the adapter keeps the contract
    _contract: type[Codec] = H2Codec
