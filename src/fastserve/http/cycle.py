"""One ASGI HTTP request/response cycle, shared by every parser adapter.

The protocol feeds it request body events; the app drives it through ``receive()`` and ``send()``.
It writes to the transport but knows nothing about how requests were parsed, so an HTTP/2 stream
could drive the same class later.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..asgi.request import RequestHead
from .errors import ClientDisconnected, InvalidResponse, caused_by_disconnect
from .flow import wake
from .response import (
    _STATUS_LINES,
    CACHED_LENGTHS,
    CHUNKED,
    CONNECTION_CLOSE,
    CONTENT_LENGTH_ENDS,
    CONTINUE_RESPONSE,
    FINAL_CHUNK,
    chunk,
    parse_response_headers,
    simple_response,
    status_line,
)

if TYPE_CHECKING:
    from ..asgi.contracts import ConnectionInfo

logger = logging.getLogger("fastserve.error")

# Reading pauses once this much request body is buffered and not yet taken by the app.
BODY_HIGH_WATER = 64 * 1024
# Below this size head and body are joined into one write; above it the copy costs more.
JOIN_LIMIT = 16 * 1024

_NO_BODY_STATUSES = frozenset((204, 304))


class RequestResponseCycle(RequestHead):
    """One request and its response. It *is* its RequestHead (the request's slots, filled by the
    wire format's rules, e.g. http1.semantics.request_head(..., RequestResponseCycle)), plus the
    ASGI state set by ``begin()``: one object per request on the hot path, not two (a separate
    RequestHead costs ~1,300 instructions per request: allocation and slot copies, callgrind).
    keep_alive, expect_100 and body_left are the request's at first and change as it goes."""

    __slots__ = (
        "conn",
        "scope",
        "writer",
        "http10",
        "body",
        "body_size",
        "more_body",
        "final_body_taken",
        "waiter",
        "disconnected",
        "response_started",
        "head",
        "head_sent",
        "response_complete",
        "status",
        "response_headers",
        "chunked",
        "expected_length",
        "bytes_sent",
        "no_body",
        "app_closes",
        "start_time",
        "task",
        "app_started",
    )

    def begin(self, conn: ConnectionInfo, scope: dict[str, Any]) -> None:
        """Bind the request (its head fields already set) to its connection and scope."""
        self.conn = conn
        self.scope = scope
        self.writer = conn.writer  # the transport, holding small writes to the end of the loop iteration
        self.http10 = self.http_version == "1.0"
        # (body_left, from the request head, is the request body still to come as its
        # content-length declares: 0 without a body, negative for a chunked one; it decides
        # whether the connection can stay open once the response is complete: see
        # HTTPProtocol._drain_body.)
        # Request body, as received and not yet handed to the app: a list once there is some
        # (most requests have none, and an empty tuple costs no allocation).
        self.body: Any = ()
        self.body_size = 0
        self.more_body = True
        self.final_body_taken = False
        self.waiter: asyncio.Future | None = None
        self.disconnected = False
        # Response state.
        self.response_started = False
        self.head: tuple[bytes, bytes, bytes] | None = None
        self.head_sent = False
        self.response_complete = False
        self.status = 0
        self.response_headers: Any = ()
        self.chunked = False
        self.expected_length: int | None = None
        self.bytes_sent = 0
        self.no_body = self.is_head
        self.app_closes = False
        self.start_time = 0.0
        self.task: asyncio.Task | None = None
        self.app_started = False

    # -- events from the protocol ---------------------------------------------------------------
    def on_body(self, data: bytes) -> None:
        self.body_left -= len(data)
        if self.response_complete or self.disconnected:
            if not self.disconnected:
                self.conn.discard_body(len(data))  # the app is done with this request
            return
        if self.body:
            self.body.append(data)
        else:
            self.body = [data]
        self.body_size += len(data)
        if self.body_size > BODY_HIGH_WATER:
            self.conn.flow.pause_reading()
        self.wake()

    def on_disconnect(self) -> None:
        if self.start_time and self.response_started and not (self.response_complete or self.disconnected):
            # A response cut short (client left, shutdown aborted it) still gets its access-log
            # line, with what was sent, as uvicorn and gunicorn do. start_time: access log on.
            self.conn.state.access_log.log(self.conn, self)
        self.disconnected = True
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:  # checked here: this runs once per request, usually with no waiter
            self.waiter = None
            wake(waiter)

    # -- ASGI receive ---------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        if self.expect_100:
            self.expect_100 = False
            if self.more_body and not self.response_started and not self.disconnected:
                self.writer.write_now(CONTINUE_RESPONSE)  # the client waits for it to send the body
        if not (self.body or self.disconnected or self.response_complete) and (
            self.more_body or self.final_body_taken
        ):
            # Nothing to hand over yet: wait for body bytes, the end of the body or a disconnect.
            conn = self.conn
            conn.flow.resume_reading()
            self.waiter = conn.loop.create_future()
            if self.more_body:
                stall = conn.loop.call_later(conn.config.timeout_request_body, conn.body_stalled, self)
                try:
                    await self.waiter
                finally:
                    stall.cancel()
            else:  # the body was taken: only a disconnect, or a shutdown notice, can come
                if not (conn.closing and self.head_sent):
                    await self.waiter
                if conn.closing and self.head_sent:
                    # Shutdown began while this response streams (SSE): as WebSockets get 1012,
                    # the app hears http.disconnect at the start of the graceful window.
                    self.waiter = None
                    return {"type": "http.disconnect"}
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        return self._take_body()

    def _take_body(self) -> dict[str, Any]:
        chunks = self.body
        if not chunks:
            body = b""
        elif len(chunks) == 1:
            body = chunks[0]
        else:
            body = b"".join(chunks)
        if chunks:
            self.body = ()
            self.body_size = 0
            self.conn.flow.resume_reading()
        if not self.more_body:
            self.final_body_taken = True
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    # -- ASGI send ------------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        if self.conn.flow.write_paused and not self.disconnected:
            await self.conn.flow.drain()
        # An invalid message raises InvalidResponse in the app before any state changes, so the
        # cycle stays defined: the app may go on, or fails with a 500 (or a close once the head is out).
        try:
            message_type = message["type"]
        except (KeyError, TypeError):
            raise InvalidResponse(f"ASGI message without a type: {message!r:.100}") from None
        if not self.response_started:
            if message_type != "http.response.start":
                raise InvalidResponse(f"expected ASGI message 'http.response.start', got {message_type!r:.100}")
            self._start_response(message)
            return  # the head goes out with the first body message (ASGI spec)
        if message_type != "http.response.body":
            raise InvalidResponse(f"expected ASGI message 'http.response.body', got {message_type!r:.100}")
        if self.response_complete:
            return  # "any further messages on the channel will be ignored" (ASGI HTTP spec)
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if not (more_body or self.head_sent) and self.keep_alive and not (self.no_body or self.chunked or self.http10):
            # The common case, kept to one branch here (measured): the whole body in one
            # message, sent with the head and its content-length in a single write. The body's
            # type is checked by len() and the join, which fail on anything but bytes-likes
            # (a str has a len: its join fails), so a bytes body pays nothing for the check.
            try:
                size = len(body)
            except TypeError:
                raise _not_bytes(body) from None
            expected = self.expected_length
            if expected is None:
                end = CONTENT_LENGTH_ENDS[size] if size < CACHED_LENGTHS else b"content-length: %d\r\n\r\n" % size
            elif expected == size:
                end = b"\r\n"  # the app's own content-length header is right
            else:
                end = None
            if end is not None:
                line, defaults, block = self.head
                if size <= JOIN_LIMIT:
                    try:
                        data = b"".join((line, defaults, block, end, body))
                    except TypeError:
                        raise _not_bytes(body) from None
                    self.head_sent = self.response_complete = True
                    self.bytes_sent = size
                    self.writer.write(data)
                else:
                    _check_body(body)
                    self.head_sent = self.response_complete = True
                    self.bytes_sent = size
                    self.writer.writelines((b"".join((line, defaults, block, end)), body))
                if self.waiter is not None:
                    self.wake()
                self.conn.on_response_complete(self)
                return
        self._send_body(body, more_body)

    def _start_response(self, message: dict[str, Any]) -> None:
        try:
            status = message["status"]
            line = _STATUS_LINES.get(status)
            if line is None or status.__class__ is not int:
                line = status_line(status)  # checks it is an int (200.0 would find a cached line)
            headers = message.get("headers", ())
            if type(headers) is not tuple:
                headers = tuple(headers)  # the cache key; also reads a one-shot iterable only once
            block, self.expected_length, self.chunked, app_closes, sets_defaults = parse_response_headers(headers)
        except (KeyError, TypeError, ValueError) as exc:  # no status; headers not pairs of bytes
            raise InvalidResponse(f"invalid 'http.response.start' message: {exc!r:.100}") from None
        self.response_started = True
        self.status = status
        self.response_headers = headers
        if self.body_left:  # (requests without a body pay one test)
            self._check_unread_body()
        if app_closes:
            self.keep_alive = False
            self.app_closes = True
        if status in _NO_BODY_STATUSES or status < 200:
            self.no_body = True
            if status == 204:
                self.expected_length = None
        defaults = self.conn.state.default_headers
        if sets_defaults:
            defaults = self.conn.state.defaults_without(headers)
        # Kept in parts: the fast path joins them with the length and body in one format op.
        self.head = (line, defaults, block)

    def _check_unread_body(self) -> None:
        """The response starts before the request body has arrived: if more of it is still to come
        than the connection would read and discard afterwards, the head says it closes. So it does
        when the client waits for a 100 Continue it will not get: it may then send the body or not
        (RFC 9110 10.1.1), and what follows could not be told apart."""
        if self.more_body and (self.expect_100 or self.body_left > self.conn.config.limit_drain_body):
            self.keep_alive = False

    def _framing(self, first_body: bytes, more_body: bool) -> bytes:
        """Framing headers, chosen when the first body message arrives."""
        if self.no_body:
            if self.is_head and self.expected_length is None and first_body and not more_body:
                framing = b"content-length: %d\r\n" % len(first_body)
            else:
                framing = b""
        elif self.expected_length is not None:
            framing = b""
        elif self.chunked or (more_body and not self.http10):
            self.chunked = True
            framing = CHUNKED
        elif more_body:
            self.keep_alive = False  # HTTP/1.0 client: the end of the body is the end of the connection
            framing = b""
        else:
            framing = b"content-length: %d\r\n" % len(first_body)
        if not self.keep_alive:
            if not self.app_closes:
                framing += CONNECTION_CLOSE
        elif self.http10:
            framing += b"connection: keep-alive\r\n"
        return framing

    def _send_body(self, body: bytes, more_body: bool) -> None:
        """Everything but the single-message fast path in send()."""
        if type(body) is not bytes:
            _check_body(body)
        overflow = False
        if self.expected_length is not None and not self.no_body:
            remaining = self.expected_length - self.bytes_sent
            if len(body) > remaining:
                logger.error(
                    "Response body longer than its content-length (%d > %d); closing the connection.",
                    self.bytes_sent + len(body),
                    self.expected_length,
                )
                body, overflow = body[:remaining], True
        self._write(body, more_body and not overflow)
        if not self.no_body:
            self.bytes_sent += len(body)
        if overflow:
            self._abandon()
        elif not more_body:
            if self.expected_length is not None and not self.no_body and self.bytes_sent < self.expected_length:
                logger.error(
                    "Response body shorter than its content-length (%d < %d); closing the connection.",
                    self.bytes_sent,
                    self.expected_length,
                )
                self._abandon()
                return
            self.response_complete = True
            self.wake()
            self.conn.on_response_complete(self)

    def _write(self, body: bytes, more_body: bool) -> None:
        # Only the write that completes the response may wait for the end of the loop iteration;
        # a part with more to come reaches the transport before send() returns (the app may
        # block next, e.g. a synchronous call between two chunks).
        write = self.writer.write_now if more_body else self.writer.write
        if not self.head_sent:
            head = b"".join((*self.head, self._framing(body, more_body), b"\r\n"))
            self.head_sent = True
            if self.no_body:
                write(head)
            elif self.chunked:
                write(head + _chunked(body, more_body))
            elif len(body) <= JOIN_LIMIT:
                write(head + body)
            else:
                self.writer.writelines((head, body))
        elif self.no_body:
            pass
        elif self.chunked:
            if body or not more_body:
                write(_chunked(body, more_body))
        elif body:
            write(body)

    def _abandon(self) -> None:
        """The response cannot be completed correctly: make the client see a broken response."""
        self.keep_alive = False
        self.response_complete = True
        self.wake()
        self.conn.on_response_complete(self)

    # -- running the app ------------------------------------------------------------------------
    async def run_app(self, app: Any) -> None:
        """The app's Task: run it, then settle what it left undone (500, close, log)."""
        self.app_started = True
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self.app_failed(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.app_finished()

    def app_finished(self) -> None:
        if self.chunked and self.head_sent and self.conn.closing and not (self.response_complete or self.disconnected):
            # Told http.disconnect at shutdown, the app returned mid-stream (sse-starlette does):
            # end the chunked body properly rather than cut it.
            self._send_body(b"", False)
        if not self.response_complete and not self.disconnected:
            if not self.response_started:
                logger.error("ASGI app returned without starting a response.")
            else:
                logger.error("ASGI app returned without completing its response.")
            self._fail()
        self.conn.on_cycle_done(self)

    def app_failed(self, exc: BaseException) -> None:
        if isinstance(exc, ClientDisconnected) or (self.disconnected and caused_by_disconnect(exc)):
            logger.debug("Client disconnected while the app was sending its response: %r", exc)
        elif isinstance(exc, InvalidResponse):
            logger.error("Invalid response from the ASGI app: %s", exc)
            self._fail()
        elif isinstance(exc, asyncio.CancelledError):
            if not self.response_complete:
                self._fail(quiet=True)
        else:
            logger.error("Exception in ASGI application", exc_info=exc)
            self._fail()
        self.conn.on_cycle_done(self)

    def _fail(self, quiet: bool = False) -> None:
        """Answer 500 if nothing was sent yet, otherwise cut the connection."""
        if self.response_complete or self.disconnected:
            return
        if not self.head_sent and not quiet:
            self.keep_alive = False
            self.head_sent = True
            self.status = 500
            self.writer.write(simple_response(500, "Internal Server Error"))
            self.response_complete = True
            self.conn.on_response_complete(self)
        else:
            self._abandon()


def _check_body(body: Any) -> None:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise _not_bytes(body)


def _not_bytes(body: Any) -> InvalidResponse:
    return InvalidResponse(f"'http.response.body' body must be bytes, not {type(body).__name__}")


def _chunked(body: bytes, more_body: bool) -> bytes:
    """One chunk (none for an empty body), plus the last-chunk marker when the body ends."""
    data = chunk(body) if body else b""
    return data if more_body else data + FINAL_CHUNK
