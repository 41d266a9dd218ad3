"""WebSockets over HTTP/2 (RFC 8441): one stream as a WebSocket session's carrier.

An extended CONNECT (``:method CONNECT``, ``:protocol``) is handed to the same WebSocketSession
as an HTTP/1.1 upgrade (websocket.stream_handler); H2WebSocketStream renders what the session
decides as HTTP/2 (the contract, point by point: websocket/carrier.py). The accept is HEADERS
``:status 200``, refusals and denials a complete response on the stream, frames DATA under the
peer's windows (what waits for window is bounded: past HIGH_WATER the session's writes pause),
the end END_STREAM, an abort RST_STREAM(CANCEL). While the connection's transport is paused for
writing, the session's send() waits on the connection's FlowControl too (``connection_flow``): a
client granting huge windows and reading nothing does not get messages buffered for it.

Received DATA is credited back as the session takes it: while the session pauses reading (its
app is behind), the stream's credit is withheld, so only this stream waits (on both codecs: the
zttp adapter holds back the credit zttp writes as it parses).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..asgi.request import RequestHead
from .codec import CANCEL, NO_ERROR, PROTOCOL_ERROR, Data, RequestHeaders, StreamClosed
from .semantics import StreamError, _fields
from .stream import render_fields, send_what_fits

if TYPE_CHECKING:
    from ..websocket.session import WebSocketSession

logger = logging.getLogger("fastserve.error")

# Frame bytes waiting for the peer's window before the session's writes pause, and resume.
HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024
_PLAIN_TEXT = (b"content-type", b"text/plain; charset=utf-8")


def websocket_request(event: RequestHeaders, client: Any, scheme: str, trusted_peer: bool) -> RequestHead:
    """The handshake request of an extended CONNECT, or StreamError. The codec has checked
    :method CONNECT with :protocol, :scheme, :path (RFC 8441 4); left here: the path itself."""
    target = event.target
    if target[:1] != b"/":
        raise StreamError(PROTOCOL_ERROR, "invalid :path")
    raw_path, _, query_string = target.partition(b"?")
    if not raw_path.isascii():
        raise StreamError(PROTOCOL_ERROR, "invalid :path")
    headers, _, forwarded, _ = _fields(event.headers, trusted_peer)
    path = raw_path.decode("ascii")
    if "%" in path:
        path = unquote(path)
    head = RequestHead()
    head.method = "CONNECT"
    head.raw_path = raw_path
    head.path = path
    head.query_string = query_string
    head.headers = headers
    head.http_version = "2"
    head.expect_100 = False
    head.is_head = False
    head.body_left = 0
    head.client = client
    head.scheme = scheme
    head.upgrade = False
    head.forwarded = forwarded
    return head


class H2WebSocketStream:
    """The WebSocketCarrier of one extended CONNECT stream (see the module docstring)."""

    __slots__ = (
        "conn",
        "stream_id",
        "session",
        "pending",
        "pending_size",
        "unacked",
        "head_sent",
        "responding",
        "ending",
        "send_done",
        "client_ended",
        "over",
        "reading_paused",
        "writes_paused",
        "connection_flow",
    )

    def __init__(self, conn: Any, stream_id: int) -> None:
        self.conn = conn  # the H2Connection (not imported: it imports this module)
        self.stream_id = stream_id
        self.session: WebSocketSession = None  # type: ignore[assignment]  # set by the handler, before the app starts
        self.pending: deque[tuple[bytes, bool]] = deque()  # DATA waiting for window
        self.pending_size = 0
        self.unacked = 0  # flow-controlled bytes received and not yet credited back
        self.head_sent = False
        self.responding = False  # a refusal or denial: the exchange ends with its END_STREAM
        self.ending = False  # end() called: END_STREAM after what waits
        self.send_done = False  # END_STREAM or RST_STREAM written
        self.client_ended = False
        self.over = False  # lost() called
        self.reading_paused = False
        self.writes_paused = False
        # The connection's write pause holds the session's send() as well (not copied: the session
        # waits on this FlowControl itself, as H2Stream.drain does).
        self.connection_flow = conn.flow

    # -- the WebSocketCarrier contract ----------------------------------------------------------
    def accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        self._send_head(200, render_fields(headers), False)

    def deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        fields = render_fields(headers)
        if not any(name == b"content-length" for name, _ in fields):
            fields.append((b"content-length", b"%d" % len(body)))
        self._respond(status, fields, body)

    def refuse(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006  # never changed
        body = reason.encode("latin-1")
        fields = [*self.conn.state.default_header_items, _PLAIN_TEXT, (b"content-length", b"%d" % len(body))]
        fields.extend(render_fields(headers))
        self._respond(status, fields, body)

    def write(self, data: bytes) -> None:
        if not (self.ending or self.send_done):
            self._send(data, False)

    def end(self) -> None:
        if not (self.ending or self.send_done):
            self.ending = True
            self._send(b"", True)

    def abort(self) -> None:
        if not self.over:
            self._reset(CANCEL)
            self._finish(None)

    def pause_reading(self) -> None:
        """Withhold this stream's credit: the client sends no more than its window on it."""
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False
        self._credit()

    def is_closing(self) -> bool:
        return self.ending or self.send_done or self.over

    def get_write_buffer_size(self) -> int:
        return self.pending_size

    # -- what the connection reports ------------------------------------------------------------
    def on_data(self, event: Data) -> None:
        self.unacked += event.flow_controlled_length
        if self.over:
            self._credit()
            return
        if event.data:
            self.session.feed(event.data)
        if not self.reading_paused and self.unacked:
            # Credit at once; the WINDOW_UPDATE goes out with whatever this read's answers are
            # (the connection flushes once at the end of data_received).
            self.conn.codec.acknowledge_received_data(self.stream_id, self.unacked)
            self.unacked = 0
        if event.end_stream:
            self.on_end()

    def on_end(self) -> None:
        """The client's END_STREAM: the WebSocket's EOF (RFC 8441 5.1)."""
        if self.over or self.client_ended:
            return
        self.client_ended = True
        if not self.head_sent and not self.responding:
            # The client gave up before the handshake was answered (END_STREAM is the WebSocket's
            # FIN): there is no WebSocket to close, so the stream is reset.
            self.abort()
            return
        self.session.feed_eof()
        if self.send_done:
            self._finish(None)
        elif not self.responding:
            self.end()  # as HTTP/1.1 closes the connection at the client's EOF

    def on_reset(self) -> None:
        """The client reset the stream."""
        self.send_done = True
        self._drop_pending()
        self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.send_done = True
        self._drop_pending()
        self._finish(exc)

    def window_opened(self) -> None:
        """The peer granted credit: send what waits for it."""
        pending = self.pending
        while pending:
            body, end = pending.popleft()
            self.pending_size -= len(body)
            if not self._send_within_window(body, end):
                break
        if not pending:
            self.conn.blocked.discard(self)
        if self.writes_paused and self.pending_size <= LOW_WATER and not self.over:
            self.writes_paused = False
            self.session.resume_writing()
        self.conn.flush(False)

    # -- sending --------------------------------------------------------------------------------
    def _respond(self, status: int, fields: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A complete response that ends the exchange (after it, the stream is reset with
        NO_ERROR if the client still has it open: RFC 9113 8.1)."""
        self.responding = True
        self._send_head(status, fields, not body)
        if body:
            self._send(body, True)

    def _send_head(self, status: int, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        if self.head_sent or self.send_done:
            return
        self.head_sent = True
        try:
            self.conn.codec.send_headers(self.stream_id, status, fields, end)
        except StreamClosed:
            self.send_done = True
            return
        self.conn.flush(False)
        if end:
            self._sent_end()

    def _send(self, body: bytes, end: bool) -> None:
        if self.send_done:
            return
        if self.pending:
            self._queue(body, end)
            return
        self._send_within_window(body, end)
        self.conn.flush(False)  # what the window took, even if the rest waits

    def _queue(self, body: bytes, end: bool, first: bool = False) -> None:
        if first:
            self.pending.appendleft((body, end))
        else:
            self.pending.append((body, end))
        self.pending_size += len(body)
        self.conn.blocked.add(self)
        if self.pending_size > HIGH_WATER and not self.writes_paused and not self.over:
            self.writes_paused = True
            self.session.pause_writing()

    def _send_within_window(self, body: bytes, end: bool) -> bool:
        """Send what the windows allow; queue the rest (in front). True when all of it went."""
        if self.send_done:
            return True
        try:
            rest = send_what_fits(self.conn.codec, self.stream_id, body, end)
        except StreamClosed:
            self.send_done = True
            self._drop_pending()
            return True
        if rest is None:
            if end:
                self._sent_end()
            return True
        self._queue(rest, end, first=True)
        return False

    def _sent_end(self) -> None:
        self.send_done = True
        if self.responding and not self.client_ended:
            self._reset(NO_ERROR)  # the rest of the request is not wanted
            self._finish(None)
        elif self.client_ended:
            self._finish(None)

    def _reset(self, error_code: int) -> None:
        self._drop_pending()
        if self.send_done and self.client_ended:
            return  # closed both ways already
        self.send_done = True
        try:
            self.conn.codec.reset_stream(self.stream_id, error_code)
        except StreamClosed:
            pass
        self.conn.flush(False)

    def _drop_pending(self) -> None:
        self.pending.clear()
        self.pending_size = 0
        self.conn.blocked.discard(self)

    # -- the end --------------------------------------------------------------------------------
    def _credit(self) -> None:
        if self.unacked and not self.conn.closed:
            unacked, self.unacked = self.unacked, 0
            self.conn.acknowledge(self.stream_id, unacked)

    def _finish(self, exc: Exception | None) -> None:
        """The stream is over: the connection forgets it, the session hears ``lost``, last."""
        if self.over:
            return
        self.over = True
        self._credit()
        self.conn.websocket_over(self)
        session, self.session = self.session, None  # type: ignore[assignment]  # ends the reference cycle
        if session is not None:
            session.lost(exc)
