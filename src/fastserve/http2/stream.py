"""H2Stream: one HTTP/2 stream as the ASGI cycle sees its connection (asgi/contracts.py).

It is the cycle's ConnectionInfo, its ResponseSink and its FlowInfo at once (one object per
request besides the cycle): the response goes out as HEADERS and DATA frames through the
connection's codec, DATA only as far as the peer's stream and connection windows allow (the rest
waits here, and the app's send() waits with it, as on HTTP/1.1 while the socket buffer is full);
request body credit goes back to the peer only as the app takes the body, so a stream whose app
does not read stalls only itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any, ClassVar

from ..asgi.contracts import EARLY_HINT, PATHSEND, TRAILERS, ZEROCOPYSEND
from ..asgi.errors import ClientDisconnected, FileEnded, InvalidResponse
from ..asgi.flow import wake
from ..asgi.response_head import ResponseHeadCache, check_body
from .codec import CANCEL, INTERNAL_ERROR, NO_ERROR, CodecUsageError, StreamClosed

if TYPE_CHECKING:
    from ..asgi.http_cycle import RequestResponseCycle

logger = logging.getLogger("fastserve.error")

# Response fields HTTP/2 forbids (RFC 9113 8.2.2): dropped from what the app sends.
CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te")
)
_PLAIN_TEXT = (b"content-type", b"text/plain; charset=utf-8")
# Most bytes of a file read at once for pathsend/zerocopysend (less when the window is smaller):
# the memory one transfer holds besides the transport's buffer.
FILE_CHUNK = 64 * 1024


def render_fields(items: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The app's validated response headers as HTTP/2 fields: names lowercase, values without
    surrounding whitespace (RFC 9113 8.2.1; HTTP/1.1 ignores it), no connection-specific field
    (the ResponseHeadCache keeps the result per header list)."""
    return [
        (name.lower(), bytes(value).strip(b" \t")) for name, value in items if name.lower() not in CONNECTION_SPECIFIC
    ]


def render_head(items: list[tuple[bytes, bytes]], chunked: bool, closes: bool) -> list[tuple[bytes, bytes]]:
    """HTTP/2 frames the body itself and has no Connection field: both wishes are dropped."""
    return render_fields(items)


HEADS = ResponseHeadCache(render_head)
# H2Stream.pending until something waits for window (most streams: never). Shared and always
# empty: only _send_within_window adds to an empty queue, and it makes the stream its own first
# (a deque per stream costs 1.5k instructions per GET, callgrind). Appending to a non-empty
# queue, clear() and popleft() on it are safe as they are.
_NOTHING_PENDING: deque = deque()


class H2Stream:
    """See the module docstring. `pending`: body parts (bytes, ends the body) that wait for window;
    the trailers wait there too, after the body, as a list of fields."""

    __slots__ = (
        "conn",
        "stream_id",
        "cycle",
        "loop",
        "config",
        "state",
        "unacked",
        "received",
        "expected",
        "discarded",
        "pending",
        "drain_waiter",
        "send_done",
        "window_timer",
        "window_progress",
        "awaiting_window",
    )

    # Every stream: trailers (a trailing HEADERS frame, whether or not the client sent TE: trailers,
    # see send_trailers), early hints (a 103 HEADERS frame), pathsend and zerocopysend (the file read
    # in pieces under the flow-control windows: sendfile cannot write inside HTTP/2 frames).
    capabilities: ClassVar[frozenset[str]] = frozenset((TRAILERS, EARLY_HINT, PATHSEND, ZEROCOPYSEND))
    heads: ClassVar[ResponseHeadCache] = HEADS

    def __init__(self, conn: Any, stream_id: int, cycle: RequestResponseCycle) -> None:
        # conn: the H2Connection (not imported: it imports this module)
        self.conn = conn
        self.stream_id = stream_id
        self.cycle = cycle
        self.loop = conn.loop
        self.config = conn.config
        self.state = conn.state
        self.unacked = 0  # flow-controlled request bytes received and not yet credited back
        self.received = 0  # request body bytes received
        self.expected = cycle.body_left if cycle.body_left >= 0 else None  # the content-length
        self.discarded = 0
        self.pending: deque[tuple[bytes | list[tuple[bytes, bytes]], bool]] = _NOTHING_PENDING
        self.drain_waiter: asyncio.Future | None = None
        self.send_done = False  # END_STREAM or RST_STREAM written: nothing more goes out
        self.window_timer: asyncio.TimerHandle | None = None  # while body waits for window
        self.window_progress = 0.0  # when the peer last granted credit we used
        self.awaiting_window = False  # a file's next piece waits for credit (nothing read yet)

    # -- ConnectionInfo -------------------------------------------------------------------------
    @property
    def sink(self) -> H2Stream:
        return self

    @property
    def flow(self) -> H2Stream:
        return self

    @property
    def closing(self) -> bool:
        return self.conn.closing

    def discard_body(self, size: int) -> None:
        """Body bytes after the response: credited (on_data) and dropped, up to --limit-drain-body;
        past it the stream is reset (RFC 9113 8.1: NO_ERROR, the response is complete)."""
        self.discarded += size
        if self.discarded > self.config.limit_drain_body and not self.send_done:
            self.reset(NO_ERROR)

    def body_stalled(self, cycle: Any) -> None:
        """The app waited --timeout-request-body for body bytes that did not come."""
        if cycle.more_body and not cycle.disconnected:
            self.refuse_body(408, "Request body timeout")

    def refuse_body(self, status: int, reason: str) -> None:
        """The request body is refused (408 stalled, 413 too large): answer `status` if no
        response has started, else reset; either way the app hears http.disconnect. As on
        HTTP/1.1, with one log line."""
        cycle = self.cycle
        if cycle.head_sent or cycle.response_complete:  # too late for an answer: the response is under way
            self.conn.stream_error(self, CANCEL, reason)
            return
        logger.info("Answered an HTTP/2 stream from %s with %d: %s", self.conn.describe_client(), status, reason)
        cycle.head_sent = True
        cycle.status = status
        self.send_error(cycle, status, reason)
        cycle.response_complete = True
        self.on_response_complete(cycle)
        try:  # the rest of the body is not wanted (RFC 9113 8.1)
            self.conn.codec.reset_stream(self.stream_id, NO_ERROR)
        except StreamClosed:
            pass
        self.conn.flush(True)
        cycle.on_disconnect()

    # The cycle reports to the stream, which does the connection's part itself: one call less for
    # each (-2.1k instructions per GET with _ended calling _maybe_forget directly, callgrind).
    def on_response_complete(self, cycle: Any) -> None:
        state = self.state
        state.response_complete(self, cycle)
        if state.h2_request_done is not None:  # --metrics-bind
            elapsed = perf_counter() - cycle.start_time if cycle.start_time else None
            state.h2_request_done(cycle.status, "http/2", elapsed)

    def on_cycle_done(self, cycle: Any) -> None:
        self.state.active_requests -= 1
        cycle.task = None
        self.conn._maybe_forget(self)

    # -- FlowInfo -------------------------------------------------------------------------------
    @property
    def write_paused(self) -> bool:
        if self.pending:  # (not bool(): read before every send())
            return True
        return self.conn.flow.write_paused

    def pause_reading(self, reason: int = 0) -> None:
        """The app has not taken BODY_HIGH_WATER bytes of body: nothing to do, the credit for
        them is withheld until it does (resume_reading), so only this stream's client waits."""

    def resume_reading(self, reason: int = 0) -> None:
        """The app took the body (or waits for more): credit the peer for what it took."""
        if self.unacked:
            unacked, self.unacked = self.unacked, 0
            self.conn.acknowledge(self.stream_id, unacked)

    async def drain(self) -> None:
        while not (self.send_done or self.cycle.disconnected):
            if self.pending:
                self.drain_waiter = self.loop.create_future()
                await self.drain_waiter
            elif self.conn.flow.write_paused:
                await self.conn.flow.drain()
            else:
                return

    # -- ResponseSink ---------------------------------------------------------------------------
    def send_head(self, cycle: Any, head: Any, body: bytes, end: bool) -> None:
        status, fields, sets_defaults = head
        defaults = self.state.default_header_items
        if sets_defaults:
            names = {bytes(name).lower() for name, _ in cycle.response_headers}
            defaults = [(n, v) for n, v in defaults if n not in names]
        headers = [*defaults, *fields]
        if type(body) is not bytes:
            check_body(body)
        if cycle.no_body:
            if cycle.is_head and cycle.expected_length is None and body and end:
                headers.append((b"content-length", b"%d" % len(body)))
            self._send_headers(status, headers, True)
            self.conn.flush(True)
            return
        if end and cycle.expected_length is None:
            headers.append((b"content-length", b"%d" % len(body)))
        if end and body and self._send_response(status, headers, body):
            self.conn.flush(True)
            return
        self._send_headers(status, headers, end and not body)
        if body:  # nothing waits for window before the head: not _send_data's queue check
            self._send_within_window(body, end)
        self.conn.flush(end)

    def _send_response(self, status: int, headers: list, body: bytes) -> bool:
        """The whole response in one codec call, when the windows take its body (a small GET's):
        -5.6k instructions per GET (callgrind) against the head, the window check and the body in
        turn. False: nothing was sent (the caller goes the long way)."""
        if self.send_done:
            return False
        try:
            if not self.conn.codec.send_response(self.stream_id, status, headers, body):
                return False
        except StreamClosed:  # as in _send_headers
            self.send_done = True
            return True
        except CodecUsageError as exc:
            raise InvalidResponse(f"response header not allowed in HTTP/2: {exc}") from None
        self._ended()
        return True

    def _send_headers(self, status: int, headers: list, end: bool) -> None:
        if self.send_done:
            return
        try:
            self.conn.codec.send_headers(self.stream_id, status, headers, end)
        except StreamClosed:
            self.send_done = True
            return
        except CodecUsageError as exc:  # a value HTTP/1.1 carries and HTTP/2 does not (a control character)
            raise InvalidResponse(f"response header not allowed in HTTP/2: {exc}") from None
        if end:
            self._ended()

    def send_body(self, cycle: Any, body: bytes, end: bool) -> None:
        if cycle.no_body or self.send_done:
            return
        if body or end:
            self._send_data(body, end)
            self.conn.flush(end)

    def _send_data(self, body: bytes, end: bool) -> None:
        if self.pending:
            self.pending.append((body, end))
            return
        self._send_within_window(body, end)

    def _send_within_window(self, body: bytes, end: bool) -> bool:
        """Send what the windows allow; queue the rest. True when all of it went out."""
        if self.send_done:
            return True
        try:
            rest = send_what_fits(self.conn.codec, self.stream_id, body, end)
        except StreamClosed:
            self.send_done = True
            self.pending.clear()
            return True
        if rest is None:
            if end:
                self._ended()
            return True
        if len(rest) < len(body):
            self.window_progress = self.loop.time()  # credit used: not a reader that stopped
        if self.pending is _NOTHING_PENDING:
            self.pending = deque()
        self.pending.appendleft((rest, end))
        self._block()
        return False

    def _block(self) -> None:
        """Wait for the peer's credit, for at most --http2-timeout-window without any."""
        self.conn.blocked.add(self)
        if self.window_timer is None:
            self.window_progress = self.loop.time()
            self.window_timer = self.loop.call_at(self.window_progress + self.config.http2_timeout_window, self._window_check)

    def _window_check(self) -> None:
        """The response has waited for the client's window: give up once it waited
        --http2-timeout-window without any credit (a client that never reads: slow read)."""
        self.window_timer = None
        if not (self.pending or self.awaiting_window) or self.send_done:
            return
        deadline = self.window_progress + self.config.http2_timeout_window
        if self.loop.time() < deadline:
            self.window_timer = self.loop.call_at(deadline, self._window_check)
            return
        self.conn.stream_error(self, CANCEL, "the client's flow-control window stayed closed")

    def window_opened(self) -> None:
        """The peer granted credit: send what waits for it."""
        pending = self.pending
        while pending:
            body, end = pending.popleft()
            if isinstance(body, list):  # the trailers, once the body before them has gone
                try:
                    self._send_trailer_fields(body)
                except InvalidResponse as exc:  # the app's send() has returned: reset, one line
                    logger.error("Invalid response from the ASGI app: %s", exc)
                    self.reset(INTERNAL_ERROR)
                    return
            elif not self._send_within_window(body, end):
                return
        if self.awaiting_window:
            if not self.conn.codec.send_window(self.stream_id):
                return  # credit for another stream (or the connection only): still none for this one
            self.awaiting_window = False
        self.conn.blocked.discard(self)
        if self.window_timer is not None:
            self.window_timer.cancel()
            self.window_timer = None
        waiter, self.drain_waiter = self.drain_waiter, None
        wake(waiter)

    def _ended(self) -> None:
        self.send_done = True  # END_STREAM or RST_STREAM is out
        if self.cycle.task is None:  # else the app's return will forget it (-0.8k instructions per GET)
            self.conn._maybe_forget(self)

    def send_informational(self, cycle: Any, status: int, headers: Any) -> None:
        if self.send_done:
            return
        try:
            self.conn.codec.send_informational(self.stream_id, status, list(headers))
        except StreamClosed:
            return
        self.conn.flush(False)

    def send_trailers(self, cycle: Any, headers: Any) -> None:
        """The trailers end the stream: a HEADERS frame with END_STREAM after the body (RFC 9113
        8.1), or an empty DATA frame with END_STREAM when there are none. Sent whether or not the
        client said TE: trailers: that keyword is about what an HTTP/1.1 hop can frame (a chunked
        body), and HTTP/2 always frames them; a client that does not want them may discard them
        (RFC 9110 6.5.1). Names lowercase, no connection-specific field (RFC 9113 8.2); the cycle
        has refused pseudo-header names (not tokens) and the fields a trailer may not carry."""
        if cycle.no_body or self.send_done:
            return  # HEAD, 204, 304: the stream ended with the head
        fields = render_fields(headers)
        if self.pending:
            self.pending.append((fields, True))  # after the body that waits for window
            return
        self._send_trailer_fields(fields)
        self.conn.flush(True)

    def _send_trailer_fields(self, fields: list[tuple[bytes, bytes]]) -> None:
        if not fields:
            self._send_within_window(b"", True)
            return
        try:
            self.conn.codec.send_trailers(self.stream_id, fields)
        except StreamClosed:
            self.send_done = True
            return
        except CodecUsageError as exc:  # a value HTTP/1.1 carries and HTTP/2 does not
            raise InvalidResponse(f"trailer field not allowed in HTTP/2: {exc}") from None
        self._ended()

    async def send_file(self, cycle: Any, head: Any, fd: int, offset: int, count: int, end: bool) -> None:
        """``count`` bytes of ``fd`` from ``offset`` as DATA, read in pieces of at most FILE_CHUNK
        and no more than the windows allow, each sent before the next is read: memory stays
        bounded whatever the file's size, and a client that stops granting credit is reset after
        --http2-timeout-window as for any body. Raises ClientDisconnected when the stream is reset
        or the connection lost, FileEnded when the file is shorter."""
        if head is not None:
            self._send_file_head(cycle, head, count, end)
        if cycle.no_body:
            return
        if not count:
            if end and head is None:
                self._send_data(b"", True)  # an empty part that ends the body
                self.conn.flush(True)
            return
        codec = self.conn.codec
        while count:
            await self.drain()  # the previous piece is out, the transport takes more
            if cycle.disconnected or self.send_done:
                raise ClientDisconnected("the client reset the stream or closed the connection")
            window = codec.send_window(self.stream_id)
            if window <= 0:  # nothing is read until there is credit for it
                await self._wait_for_window()
                continue
            data = os.pread(fd, min(count, FILE_CHUNK, window), offset)
            if not data:
                raise FileEnded(f"the file ended {count} bytes early")
            offset += len(data)
            count -= len(data)
            last = end and not count
            self._send_data(data, last)
            self.conn.flush(last)
            if count and not self.write_paused:
                await asyncio.sleep(0)  # a fast reader must not keep the loop to itself

    async def _wait_for_window(self) -> None:
        """Until the peer grants this stream credit (window_opened), the stream is reset after
        --http2-timeout-window without any, or the client goes (client_gone)."""
        self.awaiting_window = True
        self._block()
        self.drain_waiter = self.loop.create_future()
        await self.drain_waiter

    def _send_file_head(self, cycle: Any, head: Any, count: int, end: bool) -> None:
        """The response head for a body that starts with ``count`` bytes of a file: its length
        when they are the whole body (HEAD too: the length a GET would get; 204/304: none)."""
        status, fields, sets_defaults = head
        defaults = self.state.default_header_items
        if sets_defaults:
            names = {bytes(name).lower() for name, _ in cycle.response_headers}
            defaults = [(n, v) for n, v in defaults if n not in names]
        headers = [*defaults, *fields]
        if end and cycle.expected_length is None and (cycle.is_head or not cycle.no_body):
            headers.append((b"content-length", b"%d" % count))
        ended = cycle.no_body or (end and not count)
        self._send_headers(status, headers, ended)
        self.conn.flush(ended)

    def send_error(self, cycle: Any, status: int, reason: str, headers: Any = ()) -> None:
        """A complete plain-text response the server makes itself (500, 503, 408)."""
        body = reason.encode("latin-1")
        fields = [*self.state.default_header_items, _PLAIN_TEXT, (b"content-length", b"%d" % len(body))]
        fields.extend(headers)
        if cycle.is_head:  # the length a GET would get, no DATA (RFC 9110 9.3.2)
            self._send_headers(status, fields, True)
        else:
            self._send_headers(status, fields, False)
            self._send_data(body, True)
        self.conn.flush(True)

    def abort(self, cycle: Any) -> None:
        """The response cannot be completed: the client sees the stream reset."""
        self.reset(INTERNAL_ERROR)

    def starts_before_body(self, cycle: Any) -> None:
        """Nothing to decide: the stream's end says where its request body ends, and the
        connection carries other streams whatever is left unread of this one."""

    def can_end_body(self, cycle: Any) -> bool:
        """No: an app that returns mid-stream at shutdown gets its stream reset. (END_STREAM could
        end it properly; not done yet, so HTTP/2 behaves here as it always has.)"""
        return False

    def reset(self, error_code: int) -> None:
        self.pending.clear()
        self.conn.blocked.discard(self)
        if not self.send_done:
            try:
                self.conn.codec.reset_stream(self.stream_id, error_code)
            except StreamClosed:
                pass
            self._ended()
            self.conn.flush(False)
        self.client_gone()

    def client_gone(self) -> None:
        """The stream is over for the client (reset, connection lost): nothing more is sent."""
        if self.window_timer is not None:
            self.window_timer.cancel()
            self.window_timer = None
        self.pending.clear()
        self.awaiting_window = False
        self.conn.blocked.discard(self)
        self.send_done = True
        waiter, self.drain_waiter = self.drain_waiter, None
        wake(waiter)


def send_what_fits(codec: Any, stream_id: int, body: bytes, end: bool) -> bytes | None:
    """Send as much of ``body`` as the stream's and the connection's windows allow (with
    END_STREAM when ``end`` and all of it fits). Returns None when all of it went, else the rest.
    Raises the codec's StreamClosed. Shared by H2Stream and H2WebSocketStream."""
    window = codec.send_window(stream_id)
    if len(body) <= window:
        codec.send_data(stream_id, body, end)
        return None
    if window > 0:
        codec.send_data(stream_id, body[:window], False)
        return body[window:]
    return body
