"""The HTTP/2 codec on zttp (compiled, the default): zttp's H2Connection -> the codec contract.

Measured here, in process (`python -m benchmarks.h2codec`, benchmarks/RESULTS.md): ~3 µs per
GET through this adapter, 1.8 µs of it in zttp, against ~70-100 µs on h2. zttp is 0.0.x, so
pyproject pins the range these tests ran against.

What zttp 0.0.35 does its own way, and how the adapter maps it:
- Its SETTINGS are fixed (128 streams, 65536-byte header list, 16384-byte frames, 65535-byte
  windows, extended CONNECT on): `supports()` says whether the options match; no update_settings.
- It credits inbound DATA itself as it parses it (a WINDOW_UPDATE at half the window, padding
  counted) and has no call to credit later (H3's consume_data has no H2 twin). Left alone, a
  slow application would not close its client's window. So the adapter holds back the
  stream-level WINDOW_UPDATEs zttp writes (`_hold_stream_credit`) while the stream has body the
  application has not taken, and sends that credit when `acknowledge_received_data` says it
  took it: per-stream flow control as with h2, so one stream whose app does not read stalls no
  other. Connection-level credit passes as zttp writes it: each stream's window bounds what it
  can make us hold. zttp does not notice a client overrunning a window either; the adapter
  does, from what it let out (FLOW_CONTROL_ERROR, as h2 answers).
- A connection error raises RemoteProtocolError without the error code; the code is read from
  the GOAWAY zttp queued (`_last_goaway`).
- Pseudo-headers arrive as attributes; :authority becomes a `host` field and :scheme is dropped
  (the contract follows that). A RstStream event does not say whether the peer sent it or zttp
  refused the stream; the contract does not either. After zttp resets a stream, each frame the
  client still sends on it is answered with RST_STREAM(STREAM_CLOSED) and reported again (h2
  ignores them silently). A HEADERS frame (trailers) on a stream zttp or the server has reset
  is even a connection error (GOAWAY PROTOCOL_ERROR) where h2 ignores it: a client sending
  request trailers races any reset_stream() and loses the whole connection (gRPC-style uploads).
  The connection layer should prefer ending the response to resetting a stream the client is
  still sending on. SETTINGS ACKs are not reported.
- After a graceful GOAWAY it still reports new streams as requests: the adapter refuses them.
- It parks DATA beyond the send window; the contract forbids that, so send_data checks first.
- It ends a connection at its 4097th stream, whatever the pacing: GOAWAY(ENHANCE_YOUR_CALM) with
  last_stream_id 8191, so 4096 requests per connection at most (h2 has no such cap). The
  adapter says so in `max_streams_per_connection`: the connection layer should send a graceful
  GOAWAY before that (the codec does not choose when a connection ends); tests/test_h2_codec.py
  pins the number so a zttp upgrade shows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import zttp

from .codec import (
    CANCEL,
    FLOW_CONTROL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    SETTINGS_MAX_FRAME_SIZE,
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
    RequestHeaders,
    SettingsChanged,
    StreamClosed,
    StreamReset,
    Trailers,
    WindowUpdated,
)

_FIXED_SETTINGS = H2Settings()  # what zttp 0.0.35 advertises, whatever we ask
_DEFAULT_MAX_FRAME_SIZE = 16_384
_GOAWAY = 0x7
_WINDOW_UPDATE = 0x8
_INITIAL_WINDOW = 65_535  # zttp's fixed SETTINGS_INITIAL_WINDOW_SIZE
# While an app is behind, the credit for what it took goes out by this much at least (not a
# WINDOW_UPDATE per WebSocket message); all of it once the app has taken everything.
_PARTIAL_CREDIT = 16_384


class _Inbound:
    """A stream's request body bytes the application has not all taken yet, and the credit
    zttp wrote for them that waits until it has."""

    __slots__ = ("delivered", "taken", "due", "held", "granted")

    def __init__(self) -> None:
        self.delivered = 0  # body bytes reported in Data events
        self.taken = 0  # ... acknowledged by the connection (the app took them, or they were dropped)
        self.due = 0  # ... taken since credit last went out
        self.held = 0  # credit zttp wrote for this stream, not sent yet
        self.granted = 0  # credit sent, on top of the initial window


class ZttpCodec:
    __slots__ = (
        "_conn", "_stream", "_pending", "_max_outbound_frame_size", "_goaway_last", "local_settings",
        "_inbound", "_credit_written",
    )

    max_streams_per_connection: ClassVar[int | None] = 4096  # see the module docstring; pinned by a test

    def __init__(self, settings: H2Settings = _FIXED_SETTINGS) -> None:
        if not self.supports(settings):
            raise CodecCannotExpress(
                f"zttp {zttp_version()} advertises fixed HTTP/2 settings {_FIXED_SETTINGS}; "
                f"asked for {settings}: use the h2 codec for other values"
            )
        self._conn = zttp.Connection(zttp.SERVER, zttp.HTTP2)
        self._stream = self._conn.stream
        self._pending = b""  # output taken from zttp early, to read the GOAWAY it holds
        self._max_outbound_frame_size = _DEFAULT_MAX_FRAME_SIZE
        self._goaway_last: int | None = None  # last_stream_id of our graceful GOAWAY
        self.local_settings = settings
        # Streams with body not all taken (made on the first DATA: an idle connection holds none).
        self._inbound: dict[int, _Inbound] | None = None
        self._credit_written = False  # zttp parsed DATA since its output was last read: it may hold credit

    @classmethod
    def supports(cls, settings: H2Settings) -> bool:
        # SETTINGS_ENABLE_CONNECT_PROTOCOL aside: zttp always advertises it, and with WebSockets
        # off the connection answers an extended CONNECT with 501 (semantics.request_head).
        return settings.defaults_but_connect_protocol()

    def initiate_connection(self) -> None:
        self._conn.initiate_connection()

    def initiate_upgrade(
        self, settings_header: bytes, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> list[Event]:
        try:
            self._conn.initiate_upgrade_connection(method, target, headers, settings_header)
        except (zttp.ProtocolError, ValueError) as exc:  # ValueError: not base64url
            raise H2ProtocolError(PROTOCOL_ERROR, f"h2c upgrade refused: {exc}") from None
        return self._events()  # zttp reports stream 1 as a Request right away

    def receive_data(self, data: bytes) -> list[Event]:
        try:
            self._conn.receive_data(data)  # raises too: it checks frame headers as they arrive
        except zttp.RemoteProtocolError as exc:
            raise self._connection_error(exc) from None
        return self._events()

    def _connection_error(self, exc: Exception) -> H2ProtocolError:
        self._pending += self._conn.data_to_send()
        return H2ProtocolError(_last_goaway(self._pending)[1], str(exc))

    def _events(self) -> list[Event]:
        events: list[Event] = []
        next_event = self._conn.next_event
        while True:
            try:
                event: Any = next_event()  # Any: `type(x) is` dispatch does not narrow for mypy
            except zttp.RemoteProtocolError as exc:
                raise self._connection_error(exc) from None
            kind = type(event)
            if kind is zttp.Request:
                if self._goaway_last is not None and event.stream_id > self._goaway_last:
                    self._stream(event.stream_id).reset(REFUSED_STREAM)  # zttp would serve it
                    continue
                events.append(_request(event))
            elif kind is zttp.Data:
                data = event.data
                self._delivered(event.stream_id, len(data))
                events.append(Data(event.stream_id, data, len(data), False))
            elif kind is zttp.EndOfMessage:
                if self._inbound:
                    self._inbound.pop(event.stream_id, None)  # the client sends no more: no credit owed
                _end_of_message(events, event)
            elif kind is zttp.NeedData or kind is zttp.ConnectionClosed:
                return events
            else:
                control = self._control(event)
                if control is not None:
                    events.append(control)

    def _control(self, event: Any) -> Event | None:
        kind = type(event)
        if kind is zttp.RstStream:
            if self._inbound:
                self._inbound.pop(event.stream_id, None)
            if self._goaway_last is not None and event.stream_id > self._goaway_last:
                return None  # a stream after our GOAWAY, never reported (close_connection)
            return StreamReset(event.stream_id, event.error_code)
        if kind is zttp.WindowUpdate:
            return WindowUpdated(event.stream_id, event.increment)
        if kind is zttp.Settings:
            changes = dict(event.params)
            self._max_outbound_frame_size = changes.get(
                SETTINGS_MAX_FRAME_SIZE, self._max_outbound_frame_size
            )
            return SettingsChanged(changes)
        if kind is zttp.Ping:
            return PingAcked(event.data) if event.ack else PingReceived(event.data)
        if kind is zttp.GoAway:
            return ConnectionTerminated(event.error_code, event.last_stream_id)
        raise CodecUsageError(f"unexpected zttp event {event!r}")  # a zttp upgrade to re-check

    # ---- sending ----

    def send_headers(
        self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        try:
            self._open_stream(stream_id).send_response(status, headers, end_stream)
        except zttp.LocalProtocolError as exc:
            raise self._usage_error(stream_id, exc) from None

    def send_response(self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        # One stream lookup and one call from H2Stream for send_headers + send_window + send_data.
        stream = self._stream(stream_id)
        window = stream.send_window
        size = len(body)
        if window is None or size > window or size > self._conn.send_window:
            return False
        try:
            stream.send_response(status, headers, False)
            stream.send_data(body)
            stream.end_message()
        except zttp.LocalProtocolError as exc:
            raise self._usage_error(stream_id, exc) from None
        return True

    def send_informational(self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if not 100 <= status < 200 or status == 101:  # zttp would send a final 200 as "interim"
            raise CodecUsageError(f"{status} is not an interim status for HTTP/2")
        try:
            self._open_stream(stream_id).send_informational(status, headers)
        except zttp.LocalProtocolError as exc:
            raise self._usage_error(stream_id, exc) from None

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        stream = self._stream(stream_id)  # _open_stream's check, inlined: once per response
        window = stream.send_window
        if window is None:
            raise StreamClosed(f"stream {stream_id} is closed")
        try:
            if data:
                size = len(data)
                if size > window or size > self._conn.send_window:
                    raise CodecUsageError(f"{size} bytes exceed the send window on stream {stream_id}")
                stream.send_data(data)
            if end_stream:
                stream.end_message()
        except zttp.LocalProtocolError as exc:
            raise self._usage_error(stream_id, exc) from None

    def send_trailers(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        try:
            self._open_stream(stream_id).end_message(headers)
        except zttp.LocalProtocolError as exc:
            raise self._usage_error(stream_id, exc) from None

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None:
        try:
            self._open_stream(stream_id).reset(error_code)
        except zttp.LocalProtocolError as exc:
            raise self._usage_error(stream_id, exc) from None

    def _open_stream(self, stream_id: int) -> zttp.Stream:
        """zttp would still send HEADERS on a stream the peer has reset: refuse it here."""
        stream = self._stream(stream_id)
        if stream.send_window is None:
            raise StreamClosed(f"stream {stream_id} is closed")
        return stream

    def _usage_error(self, stream_id: int, exc: Exception) -> CodecUsageError:
        if self._stream(stream_id).send_window is None:
            return StreamClosed(f"stream {stream_id} is closed")
        return CodecUsageError(str(exc))

    # ---- flow control: zttp's stream credit, held until the application takes the body ----

    def _delivered(self, stream_id: int, size: int) -> None:
        inbound = self._inbound.get(stream_id) if self._inbound is not None else None
        if inbound is None:
            if self._inbound is None:
                self._inbound = {}
            inbound = self._inbound[stream_id] = _Inbound()
        inbound.delivered += size
        self._credit_written = True
        if inbound.delivered > _INITIAL_WINDOW + inbound.granted:
            # More than the client could have had credit for (padding only makes it less).
            self._conn.close(FLOW_CONTROL_ERROR)
            raise self._connection_error(RuntimeError(f"stream {stream_id} sent DATA beyond its window"))

    def acknowledge_received_data(self, stream_id: int, length: int) -> None:
        if self._credit_written:
            self._take_output()
        inbound = self._inbound.get(stream_id) if self._inbound else None
        if inbound is None:
            return
        inbound.taken += length
        if inbound.taken >= inbound.delivered:  # all taken: what zttp wrote goes, padding's credit included
            credit = inbound.held
            del self._inbound[stream_id]  # (the client's window is at most the initial one again)
        else:
            inbound.due += length
            if inbound.due < _PARTIAL_CREDIT or not inbound.held:
                return
            credit = inbound.due if inbound.due < inbound.held else inbound.held
            inbound.due = 0
            inbound.held -= credit
            inbound.granted += credit
        if credit:
            self._pending += _window_update(stream_id, credit)

    def _take_output(self) -> None:
        """Move zttp's output to _pending, holding back the stream credit not yet due."""
        self._credit_written = False
        output = self._conn.data_to_send()
        if output:
            self._pending += self._hold_stream_credit(output)

    def _hold_stream_credit(self, frames: bytes) -> bytes:
        inbound_streams = self._inbound or {}
        kept: list[bytes] = []
        start = offset = 0
        end = len(frames)
        while offset + 9 <= end:
            length = int.from_bytes(frames[offset : offset + 3], "big")
            stream_id = int.from_bytes(frames[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
            if frames[offset + 3] == _WINDOW_UPDATE and stream_id:
                increment = int.from_bytes(frames[offset + 9 : offset + 13], "big") & 0x7FFFFFFF
                inbound = inbound_streams.get(stream_id)
                if inbound is not None:
                    if inbound.taken < inbound.delivered:
                        inbound.held += increment
                        kept.append(frames[start:offset])
                        start = offset + 9 + length
                    else:
                        inbound.granted += increment
            offset += 9 + length
        if not kept:
            return frames
        kept.append(frames[start:])
        return b"".join(kept)

    def send_window(self, stream_id: int) -> int:
        window = self._stream(stream_id).send_window
        if window is None:
            return 0
        connection_window = self._conn.send_window
        if connection_window < window:
            window = connection_window
        return window if window > 0 else 0  # (not min/max: with send_data's one lookup, -3.5k per GET)

    @property
    def max_outbound_frame_size(self) -> int:
        return self._max_outbound_frame_size

    def update_settings(self, changes: dict[int, int]) -> None:
        raise CodecCannotExpress(f"zttp {zttp_version()} cannot change its SETTINGS mid-connection")

    def close_connection(self, error_code: int = NO_ERROR, last_stream_id: int | None = None) -> None:
        if last_stream_id is None:
            last_stream_id = self._goaway_last  # None: zttp's highest processed stream
        if self._credit_written:
            self._take_output()
        self._conn.close(error_code, last_stream_id)
        if error_code == NO_ERROR:  # graceful: zttp keeps serving, but also serves new streams
            self._pending += self._conn.data_to_send()
            self._goaway_last = _last_goaway(self._pending)[0]

    def data_to_send(self) -> bytes:
        if self._credit_written:  # (once per read with DATA in it; never on a GET)
            self._take_output()
        if self._pending:
            data, self._pending = self._pending + self._conn.data_to_send(), b""
            return data
        return self._conn.data_to_send()


def _request(event: Any) -> RequestHeaders:
    headers = event.headers
    if type(headers) is not list:
        headers = headers.to_list()
    return RequestHeaders(
        event.stream_id, event.method, event.target, event.protocol, headers, event.end_stream
    )


def _end_of_message(events: list[Event], event: Any) -> None:
    """zttp ends a body with a separate event; fold it into the Data it follows, as h2 does."""
    stream_id = event.stream_id
    if event.trailers:
        events.append(Trailers(stream_id, event.trailers))
        return
    last = events[-1] if events else None
    if type(last) is Data and last.stream_id == stream_id:
        events[-1] = Data(stream_id, last.data, last.flow_controlled_length, True)
    else:
        events.append(Data(stream_id, b"", 0, True))


def _window_update(stream_id: int, increment: int) -> bytes:
    return b"\x00\x00\x04\x08\x00" + stream_id.to_bytes(4, "big") + increment.to_bytes(4, "big")


def _last_goaway(frames: bytes) -> tuple[int, int]:
    """(last_stream_id, error_code) of the last GOAWAY in `frames`: zttp's exceptions do not
    carry the code, nor does close() say which stream it named."""
    found = (0, PROTOCOL_ERROR)
    offset = 0
    while offset + 9 <= len(frames):
        length = int.from_bytes(frames[offset : offset + 3], "big")
        if frames[offset + 3] == _GOAWAY and offset + 17 <= len(frames):
            last_stream_id = int.from_bytes(frames[offset + 9 : offset + 13], "big") & 0x7FFFFFFF
            found = (last_stream_id, int.from_bytes(frames[offset + 13 : offset + 17], "big"))
        offset += 9 + length
    return found


def zttp_version() -> str:
    from importlib.metadata import version

    return version("zttp")


if TYPE_CHECKING:  # mypy checks that the adapter keeps the contract
    _contract: type[Codec] = ZttpCodec
