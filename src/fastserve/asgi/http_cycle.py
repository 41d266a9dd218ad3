"""One ASGI HTTP request/response cycle, shared by every parser adapter.

The protocol feeds it request body events; the app drives it through ``receive()`` and ``send()``.
It writes to the transport but knows nothing about how requests were parsed, so an HTTP/2 stream
could drive the same class later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .app_runner import CANCELLED, DISCONNECTED, failure_kind, log_failure, run_app
from .contracts import EARLY_HINT, PATHSEND, ZEROCOPYSEND
from .errors import ClientDisconnected, FileEnded, InvalidResponse
from .flow import wake
from .request import RequestHead
from .response_head import (
    Field,
    check_body,
    check_status,
    not_bytes,
    validate_links,
    validate_trailers,
)

if TYPE_CHECKING:
    from .contracts import ConnectionInfo

logger = logging.getLogger("fastserve.error")

# Reading pauses once this much request body is buffered and not yet taken by the app.
BODY_HIGH_WATER = 64 * 1024

_NO_BODY_STATUSES = frozenset((204, 304))
# The ASGI extension messages that send a file, and the sink capability each needs.
_FILE_MESSAGES = {"http.response.pathsend": PATHSEND, "http.response.zerocopysend": ZEROCOPYSEND}
# O_NONBLOCK: opening a FIFO named by pathsend must not wait for a writer (it is then refused).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


class RequestResponseCycle(RequestHead):
    """One request and its response. It *is* its RequestHead (the request's slots, filled by the
    wire format's rules, e.g. http1.semantics.request_head(..., RequestResponseCycle)), plus the
    ASGI state set by ``begin()``: one object per request on the hot path, not two (a separate
    RequestHead costs ~1,300 instructions per request: allocation and slot copies, callgrind).
    expect_100 and body_left are the request's at first and change as it goes. A wire format may
    subclass it with what it decides per request (HTTP/1.1: keep_alive, see http1/connection.H1Cycle)."""

    __slots__ = (
        "conn",
        "scope",
        "sink",
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
        "expected_length",
        "bytes_sent",
        "no_body",
        "start_time",
        "task",
        "app_started",
        # http.response.trailers (ASGI extension). trailers: the app announced them in
        # http.response.start, so its last body part does not end the response, the trailers do
        # (set with the start: nothing to set per request before it). trailer_fields: None until
        # the body has ended, then the fields received so far.
        "trailers",
        "trailer_fields",
    )

    def begin(self, conn: ConnectionInfo, scope: dict[str, Any]) -> None:
        """Bind the request (its head fields already set) to its connection and scope."""
        self.conn = conn
        self.scope = scope
        self.sink = conn.sink  # renders the response in the connection's wire format (a ResponseSink)
        # (body_left, from the request head, is the request body still to come as its
        # content-length declares: 0 without a body, negative for a chunked one; what it means
        # for the connection once the response is complete is the wire format's business: see
        # the sink's starts_before_body and HTTPProtocol._drain_body.)
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
        self.head: Any = None  # (status, the sink's rendering of the headers, the app sets server/date)
        self.head_sent = False
        self.response_complete = False
        self.status = 0
        self.response_headers: Any = ()
        self.expected_length: int | None = None
        self.bytes_sent = 0
        self.no_body = self.is_head
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
                self.sink.send_informational(self, 100, ())  # the client waits for it to send the body
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
    # (Any, here and below, for what the app hands in unchecked: the compiled build would refuse
    # a non-dict message, a str body or a more_body of 1 with its own TypeError, before the checks
    # that answer them as the ASGI spec says)
    async def send(self, message: Any) -> None:
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
                if message_type == "http.response.early_hint":
                    self._send_early_hint(message)
                    return
                raise InvalidResponse(f"expected ASGI message 'http.response.start', got {message_type!r:.100}")
            self._start_response(message)
            return  # the head goes out with the first body message (ASGI spec)
        if message_type != "http.response.body":
            if message_type in _FILE_MESSAGES:
                await self._send_file_message(message_type, message)
                return
            self._send_other(message_type, message)
            return
        if self.response_complete:
            return  # "any further messages on the channel will be ignored" (ASGI HTTP spec)
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if not (more_body or self.head_sent or self.no_body or self.trailers):
            # The common case, kept to one branch here (measured): the whole body in one
            # message, handed to the sink with the head in one call. A body that is not sized
            # fails here; one that is not a bytes-like fails in the sink's join, so a bytes body
            # pays nothing for the check.
            try:
                size = len(body)
            except TypeError:
                raise not_bytes(body) from None
            expected = self.expected_length
            if expected is None or expected == size:
                self.sink.send_head(self, self.head, body, True)
                self.head_sent = self.response_complete = True
                self.bytes_sent = size
                if self.waiter is not None:
                    self.wake()
                self.conn.on_response_complete(self)
                return
        self._send_body(body, more_body)

    def _start_response(self, message: Any) -> None:
        try:
            status = message["status"]
            if status.__class__ is not int or not 100 <= status <= 999:
                check_status(status)  # raises (200.0 is not a status either)
            headers = message.get("headers", ())
            if type(headers) is not tuple:
                headers = tuple(headers)  # the cache key; also reads a one-shot iterable only once
            wire_head, self.expected_length, sets_defaults = self.sink.heads.get(headers)
        except (KeyError, TypeError, ValueError) as exc:  # no status; headers not pairs of bytes
            raise InvalidResponse(f"invalid 'http.response.start' message: {exc!r:.100}") from None
        self.response_started = True
        if "trailers" in message and message["trailers"]:
            self.trailers = True
            self.trailer_fields: list[Field] | None = None
        else:
            self.trailers = False
        self.status = status
        self.response_headers = headers
        if self.body_left and self.more_body:  # (requests without a body pay one test)
            self.sink.starts_before_body(self)
        if status in _NO_BODY_STATUSES or status < 200:
            self.no_body = True
            if status == 204:
                self.expected_length = None
        self.head = (status, wire_head, sets_defaults)

    def _send_body(self, body: Any, more_body: Any) -> None:
        """Everything but the single-message fast path in send()."""
        if self.trailers and self.trailer_fields is not None:
            raise InvalidResponse("'http.response.body' after the body ended (the trailers were to come)")
        if type(body) is not bytes:
            check_body(body)
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
        end = overflow or not more_body
        if self.trailers and not overflow:
            end = False  # the trailers end this response, not its body
        if not self.head_sent:
            self.head_sent = True
            self.sink.send_head(self, self.head, body, end)
        else:
            self.sink.send_body(self, body, end)
        if not self.no_body:
            self.bytes_sent += len(body)
        self._body_part_sent(overflow, more_body)

    def _body_part_sent(self, overflow: bool, more_body: Any) -> None:
        """After a body part (bytes or a file's): the response is cut, goes on, waits for its
        trailers, or is complete."""
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
            if self.trailers:
                self.trailer_fields = []  # the body has ended; http.response.trailers ends the response
                return
            self.response_complete = True
            self.wake()
            self.conn.on_response_complete(self)

    # -- ASGI extensions: trailers, early hints -------------------------------------------------
    def _send_other(self, message_type: Any, message: Any) -> None:
        """A message after http.response.start other than a body: an extension's, or an error."""
        if self.response_complete:
            return  # "any further messages on the channel will be ignored" (ASGI HTTP spec)
        if message_type == "http.response.trailers":
            self._send_trailers(message)
        elif message_type == "http.response.early_hint":
            self._send_early_hint(message)
        else:
            raise InvalidResponse(f"expected ASGI message 'http.response.body', got {message_type!r:.100}")

    def _send_trailers(self, message: Any) -> None:
        """Trailer fields, collected until more_trailers is False; then the sink ends the response
        with them (or drops them where the wire or the client cannot take them)."""
        if not self.trailers:
            raise InvalidResponse("'http.response.trailers' without 'trailers': True in 'http.response.start'")
        if self.trailer_fields is None:
            raise InvalidResponse("'http.response.trailers' before the body ended (more_body was not False)")
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        fields = validate_trailers(message.get("headers", ()))  # raises before any state changes
        self.trailer_fields += fields
        if not message.get("more_trailers", False):
            self._complete_with_trailers(self.trailer_fields)

    def _complete_with_trailers(self, fields: list[Field]) -> None:
        self.sink.send_trailers(self, fields)
        self.response_complete = True
        self.wake()
        self.conn.on_response_complete(self)

    def _end_with_trailers_so_far(self) -> None:
        """At shutdown the app returned mid-stream (see app_finished): end the body, and the
        response with the trailer fields it sent, if any."""
        if self.trailer_fields is None:
            self._send_body(b"", False)
            if self.response_complete:  # abandoned: shorter than its content-length
                return
        self._complete_with_trailers(self.trailer_fields or [])

    def _send_early_hint(self, message: Any) -> None:
        """103 Early Hints with one Link field per link, ahead of the final head. Once the head
        has gone (or the client), the hint is dropped: the ASGI spec lets the server ignore it."""
        links = validate_links(message.get("links", ()))  # an invalid message fails even if dropped
        if links and not (self.head_sent or self.disconnected) and EARLY_HINT in self.sink.capabilities:
            self.sink.send_informational(self, 103, [(b"link", link) for link in links])

    def _abandon(self) -> None:
        """The response cannot be completed correctly: make the client see a broken response."""
        self.sink.abort(self)
        self.response_complete = True
        self.wake()
        self.conn.on_response_complete(self)

    # -- ASGI extensions: http.response.pathsend and http.response.zerocopysend --------------------
    async def _send_file_message(self, message_type: str, message: Any) -> None:
        if _FILE_MESSAGES[message_type] not in self.sink.capabilities:
            raise InvalidResponse(f"{message_type!r} is not offered on this connection (scope['extensions'])")
        if self.response_complete:
            return  # ignored, as a body message would be
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        if message_type == "http.response.pathsend":
            await self._pathsend(message)
        else:
            await self._zerocopysend(message)

    async def _pathsend(self, message: Any) -> None:
        """The server opens the file and sends all of it as the whole body (ASGI extensions:
        "cannot be mixed with http.response.body"). A file that cannot be opened is the server's
        problem, not the app's: a 500 and one log line, and send() returns."""
        if self.head_sent:
            raise InvalidResponse("'http.response.pathsend' after body messages (it is the whole body)")
        path = message.get("path")
        if type(path) is not str or not os.path.isabs(path) or "\0" in path:
            raise InvalidResponse(f"'http.response.pathsend' needs an absolute path as a str, got {path!r:.100}")
        try:
            fd, size = _open_regular_file(path)
        except OSError as exc:
            logger.error("Cannot send the file %r (http.response.pathsend): %s; answering 500.", path,
                         exc.strerror or exc)
            self._fail()
            return
        try:
            expected = self.expected_length
            if expected is not None and not self.no_body and size < expected:
                logger.error("The file %r is shorter than the response's content-length (%d < %d); "
                             "answering 500.", path, size, expected)
                self._fail()
                return
            # A file longer than the app's content-length (it grew since the app looked) is sent up to it.
            await self._send_file_part(fd, 0, size if expected is None else expected, False)
        finally:
            os.close(fd)

    async def _zerocopysend(self, message: Any) -> None:
        """Part of the body from the app's open file: ``offset`` (default: its position, which then
        moves past what was sent, as a read would move it), ``count`` (default: to its end),
        ``more_body``. The app closes the file."""
        file: Any = message.get("file")  # (None, or anything else, is refused below: no fileno)
        offset, count = message.get("offset"), message.get("count")
        try:
            fd = file if type(file) is int else file.fileno()
            for value in (offset, count):
                if value is not None and (type(value) is not int or value < 0):
                    raise ValueError(f"offset and count must be ints >= 0, got {value!r:.40}")
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ValueError("not a regular file")
            start = offset if offset is not None else (file.tell() if hasattr(file, "tell") else os.lseek(fd, 0, os.SEEK_CUR))
        except (AttributeError, TypeError, ValueError, OSError) as exc:
            raise InvalidResponse(f"invalid 'http.response.zerocopysend' message: {exc!r:.100}") from None
        available = max(0, info.st_size - start)
        if count is None:
            count = available
        elif count > available:
            raise InvalidResponse(f"'http.response.zerocopysend' count {count} runs past the end of the file "
                                  f"({available} bytes from offset {start})")
        sent = await self._send_file_part(fd, start, count, message.get("more_body", False))
        if offset is None:
            if hasattr(file, "seek"):
                file.seek(start + sent)
            else:
                os.lseek(fd, start + sent, os.SEEK_SET)

    async def _send_file_part(self, fd: int, offset: int, count: int, more_body: Any) -> int:
        """As _send_body, with the bytes in a file; returns how many were sent."""
        if self.trailers and self.trailer_fields is not None:
            raise InvalidResponse("a file body part after the body ended (the trailers were to come)")
        overflow = False
        if self.expected_length is not None and not self.no_body:
            remaining = self.expected_length - self.bytes_sent
            if count > remaining:
                logger.error(
                    "Response body longer than its content-length (%d > %d); closing the connection.",
                    self.bytes_sent + count,
                    self.expected_length,
                )
                count, overflow = remaining, True
        end = overflow or not more_body
        if self.trailers and not overflow:
            end = False  # the trailers end this response, not its body
        head = None if self.head_sent else self.head
        self.head_sent = True
        try:
            await self.sink.send_file(self, head, fd, offset, count, end)
        except FileEnded as exc:
            logger.error("A file sent as the response body ended early (%s); closing the connection.", exc)
            self._abandon()
            return 0
        except ClientDisconnected:
            if not self.disconnected:  # seen by the write before the connection knew
                self._abandon()
            raise
        if not self.no_body:
            self.bytes_sent += count
        self._body_part_sent(overflow, more_body)
        return count

    # -- running the app ------------------------------------------------------------------------
    def run_app(self, app: Any) -> Coroutine[Any, Any, None]:
        """The app's Task body (asgi/app_runner.run_app, which the connection calls directly)."""
        return run_app(self, app)

    def app_finished(self) -> None:
        if (
            not (self.response_complete or self.disconnected)
            and self.head_sent
            and self.conn.closing
            and self.sink.can_end_body(self)
        ):
            # Told http.disconnect at shutdown, the app returned mid-stream (sse-starlette does):
            # end the body properly (a chunked one) rather than cut it.
            if self.trailers:
                self._end_with_trailers_so_far()
            else:
                self._send_body(b"", False)
        if not self.response_complete and not self.disconnected:
            if not self.response_started:
                logger.error("ASGI app returned without starting a response.")
            else:
                logger.error("ASGI app returned without completing its response.")
            self._fail()
        self.conn.on_cycle_done(self)

    def app_failed(self, exc: BaseException) -> None:
        kind = failure_kind(exc, self.disconnected)
        log_failure(kind, exc)
        if kind is CANCELLED:
            if not self.response_complete:
                self._fail(quiet=True)
        elif kind is not DISCONNECTED:
            self._fail()  # a 500, or a close once the head is out
        self.conn.on_cycle_done(self)

    def _fail(self, quiet: bool = False) -> None:
        """Answer 500 if nothing was sent yet, otherwise cut the connection."""
        if self.response_complete or self.disconnected:
            return
        if not self.head_sent and not quiet:
            self.head_sent = True
            self.status = 500
            self.sink.send_error(self, 500, "Internal Server Error")
            self.response_complete = True
            self.conn.on_response_complete(self)
        else:
            self._abandon()


def _open_regular_file(path: str) -> tuple[int, int]:
    """(a descriptor, the size) of the regular file at ``path``; OSError otherwise."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"not a regular file ({stat.filemode(info.st_mode)})")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size
