"""H1Writer: the HTTP/1.1 ResponseSink of one connection (asgi/contracts.py).

The cycle decides what a response is (status, validated headers, body rules, when it ends);
this renders it: the status line, the default and the app's header block, the framing
(content-length, chunked, or the end of the connection for a streamed HTTP/1.0 body), the
Connection field for keep-alive and HTTP/1.0, 100 Continue, and the plain-text 500 and 503.

It writes through the connection's HeldWriter (http/flow.py): only the write that completes a
response may wait for the end of the loop iteration; a part with more to come reaches the
transport before send() returns (the app may block next, e.g. a synchronous call between two
chunks).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..asgi.contracts import EARLY_HINT, PATHSEND, TRAILERS, ZEROCOPYSEND
from ..asgi.response_head import check_body, not_bytes
from .filesend import send_file_bytes
from .render import (
    _STATUS_LINES,
    CACHED_LENGTHS,
    CHUNKED,
    CONNECTION_CLOSE,
    CONTENT_LENGTH_ENDS,
    CONTINUE_RESPONSE,
    FINAL_CHUNK,
    HEADS,
    chunk,
    informational,
    last_chunk_with_trailers,
    simple_response,
    status_line,
)
from .semantics import accepts_trailers

# Below this size head and body are joined into one write; above it the copy costs more.
JOIN_LIMIT = 16 * 1024


class H1Writer:
    """Renders the responses of one HTTP/1.1 connection (see the module docstring)."""

    __slots__ = ("out", "state", "heads", "chunked")

    # Every HTTP/1.1 connection: trailers (written to clients that sent TE: trailers), early hints
    # (never to HTTP/1.0), pathsend and zerocopysend (zero-copy on a plain socket, read in bounded
    # pieces over TLS: http1/filesend.py).
    capabilities: ClassVar[frozenset[str]] = frozenset((TRAILERS, EARLY_HINT, PATHSEND, ZEROCOPYSEND))

    def __init__(self, out: Any, state: Any) -> None:
        self.out = out  # the connection's HeldWriter
        self.state = state  # ServerState: the default header block
        # The app's validated response headers, rendered as HTTP/1.1 header blocks. An instance
        # slot, not a class attribute: read once per response, a slot read is the cheaper one.
        self.heads = HEADS
        # Whether the body of the response under way is chunked: set with its first body part.
        # Writer state, not the cycle's: responses on one connection are written one at a time
        # (the active request's), and only HTTP/1.1 frames a body in chunks. Stale once the
        # response is complete; nothing reads it then.
        self.chunked = False

    def send_head(self, cycle: Any, head: Any, body: Any, end: bool) -> None:
        """``head``: (status, (header block, the app asked for chunked, the app's Connection
        field says close) from ``heads``, the app sets server or date itself)."""
        status, (block, app_chunked, app_closes), sets_defaults = head
        line = _STATUS_LINES.get(status) or status_line(status)
        defaults = self.state.default_headers
        if sets_defaults:
            defaults = self.state.defaults_without(cycle.response_headers)
        if end and cycle.keep_alive and not (cycle.no_body or app_chunked or app_closes or cycle.http_version == "1.0"):
            # The common case (measured): the whole body with the head and its content-length in
            # a single write. The body's type is checked by the join, which fails on anything
            # but bytes-likes (the cycle took its len()), so a bytes body pays nothing for it.
            size = len(body)
            if cycle.expected_length is None:
                last = CONTENT_LENGTH_ENDS[size] if size < CACHED_LENGTHS else b"content-length: %d\r\n\r\n" % size
            else:
                last = b"\r\n"  # the app's own content-length header is right (the cycle checked)
            if size <= JOIN_LIMIT:
                try:
                    data = b"".join((line, defaults, block, last, body))
                except TypeError:
                    raise not_bytes(body) from None
                self.out.write(data)
            else:
                check_body(body)
                self.out.writelines((b"".join((line, defaults, block, last)), body))
            return
        if type(body) is not bytes:
            check_body(body)
        framing = self._framing(cycle, len(body), end, bool(body), app_chunked, app_closes)
        data = b"".join((line, defaults, block, framing, b"\r\n"))
        write = self.out.write if end else self.out.write_now
        if cycle.no_body:
            write(data)
        elif self.chunked:
            write(data + _chunked(body, end))
        elif len(body) <= JOIN_LIMIT:
            write(data + body)
        else:
            self.out.writelines((data, body))

    def _framing(self, cycle: Any, length: int, end: bool, known: bool, app_chunked: bool, app_closes: bool) -> bytes:
        """Framing headers, chosen when the first body part (``length`` bytes) arrives. ``known``:
        for a HEAD, whether ``length`` is the length a GET would get (an app's empty body is not;
        a file's size is). ``app_chunked``, ``app_closes``: what the app's headers asked for."""
        self.chunked = False
        if app_closes:
            cycle.keep_alive = False  # the app's own Connection: close is in its header block
        if cycle.no_body:
            if cycle.is_head and cycle.expected_length is None and known and end:
                framing = b"content-length: %d\r\n" % length
            else:
                framing = b""
        elif cycle.expected_length is not None:
            framing = b""
        elif app_chunked or (not end and cycle.http_version != "1.0"):
            self.chunked = True
            framing = CHUNKED
        elif not end:
            cycle.keep_alive = False  # HTTP/1.0 client: the end of the body is the end of the connection
            framing = b""
        else:
            framing = b"content-length: %d\r\n" % length
        return framing + _connection_field(cycle, app_closes)

    def send_body(self, cycle: Any, body: Any, end: bool) -> None:
        if cycle.no_body:
            return
        write = self.out.write if end else self.out.write_now
        if self.chunked:
            if body or end:
                write(_chunked(body, end))
        elif body:
            write(body)

    def send_informational(self, cycle: Any, status: int, headers: Any) -> None:
        """100 Continue (the client waits for it to send the body) or 103 Early Hints (validated
        pairs): before the final head, at once. Never to an HTTP/1.0 client (RFC 9110 15.2)."""
        if status == 100 and not headers:
            self.out.write_now(CONTINUE_RESPONSE)
        elif cycle.http_version != "1.0":
            self.out.write_now(informational(status, headers))

    def starts_before_body(self, cycle: Any) -> None:
        """The response starts before the request body has arrived: if more of it is still to come
        than the connection would read and discard afterwards, the head says it closes. So it does
        when the client waits for a 100 Continue it will not get: it may then send the body or not
        (RFC 9110 10.1.1), and what follows could not be told apart."""
        if cycle.expect_100 or cycle.body_left > cycle.conn.config.limit_drain_body:
            cycle.keep_alive = False

    def send_trailers(self, cycle: Any, headers: Any) -> None:
        """The end of a response that announced trailers, its body sent (``end`` was False).
        Only a chunked body carries a trailer section, and only to a client that sent
        ``TE: trailers`` (RFC 9112 7.1.2, RFC 9110 6.5.1); otherwise the fields are dropped (ASGI
        spec). A content-length body is complete already, an HTTP/1.0 one ends with the connection."""
        if cycle.no_body or not self.chunked:
            return
        if headers and cycle.http_version != "1.0" and accepts_trailers(cycle.headers):
            self.out.write(last_chunk_with_trailers(headers))
        else:
            self.out.write(FINAL_CHUNK)

    async def send_file(self, cycle: Any, head: Any, fd: int, offset: int, count: int, end: bool) -> None:
        """``count`` bytes of ``fd`` from ``offset`` as (part of) the body, after the head when
        ``head`` is not None. Returns once they are handed to the kernel (http1/filesend.py)."""
        data = b"" if head is None else self._file_head(cycle, head, count, end)
        if cycle.no_body:
            if data:
                (self.out.write if end else self.out.write_now)(data)
            return
        tail = b""
        if self.chunked:
            if count:
                data += b"%x\r\n" % count
                tail = b"\r\n"
            if end:
                tail += FINAL_CHUNK
        if data:
            self.out.write_now(data)
        if count:
            await send_file_bytes(self.out, cycle.conn.flow, fd, offset, count)
        if tail:
            (self.out.write if end else self.out.write_now)(tail)

    def _file_head(self, cycle: Any, head: Any, count: int, end: bool) -> bytes:
        """The response head for a body that starts with ``count`` bytes of a file."""
        status, (block, app_chunked, app_closes), sets_defaults = head
        line = _STATUS_LINES.get(status) or status_line(status)
        defaults = self.state.defaults_without(cycle.response_headers) if sets_defaults else self.state.default_headers
        framing = self._framing(cycle, count, end, True, app_chunked, app_closes)
        return b"".join((line, defaults, block, framing, b"\r\n"))

    def send_error(self, cycle: Any, status: int, reason: str, headers: Any = ()) -> None:
        """A complete plain-text response, after which the connection closes."""
        cycle.keep_alive = False
        extra = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.out.write(simple_response(status, reason, extra))

    def abort(self, cycle: Any) -> None:
        """The response cannot be completed: the client sees the connection close."""
        cycle.keep_alive = False

    def can_end_body(self, cycle: Any) -> bool:
        """A chunked body can be ended with its last chunk at any time; a sized one cannot, and an
        HTTP/1.0 one ends with the connection anyway."""
        return self.chunked


def _connection_field(cycle: Any, app_closes: bool) -> bytes:
    """The Connection field a response needs: close (unless the app's block has it), or
    keep-alive for an HTTP/1.0 client."""
    if not cycle.keep_alive:
        return b"" if app_closes else CONNECTION_CLOSE
    return b"connection: keep-alive\r\n" if cycle.http_version == "1.0" else b""


def _chunked(body: Any, end: bool) -> bytes:
    """One chunk (none for an empty body), plus the last-chunk marker when the body ends."""
    data = chunk(body) if body else b""
    return data + FINAL_CHUNK if end else data
