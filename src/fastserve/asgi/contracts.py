"""The two small contracts between the protocol-neutral core and a wire format (typing.Protocol:
declared, checked by type checkers, never inherited). See shared/DESIGN.md "Contracts".

- ``ResponseSink``: where a request's response goes. The HTTP/1.1 writer bound to a connection
  renders it as a status line, a header block and CL/chunked/close framing; an HTTP/2 stream
  would render HEADERS and DATA frames. The fast path is one call: ``send_head(..., end=True)``.
- ``ConnectionInfo``: what an ASGI HTTP cycle needs from the connection that carries it (its
  sink, flow control, timers, the shared server state, and the two callbacks that end its life).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import asyncio

# Capability names a sink may advertise; the scope offers the matching ASGI extension.
TRAILERS = "trailers"
EARLY_HINT = "early_hint"
PATHSEND = "pathsend"
ZEROCOPYSEND = "zerocopysend"


class ResponseSink(Protocol):
    """Renders one response in a wire format. ``cycle`` is the ASGI cycle the response belongs to
    (its status, validated head and flags; HTTP/1.1's also its keep-alive); ``head`` is the validated response
    head the cycle built (see asgi/response_head.py)."""

    capabilities: ClassVar[frozenset[str]]
    # The app's response headers -> (this wire format's rendering, content-length, the app sets
    # server/date): a ResponseHeadCache (asgi/response_head.py). Framing and Connection wishes are
    # in the rendering: only the wire format reads them.
    heads: Any

    def send_head(self, cycle: Any, head: Any, body: bytes, end: bool) -> None:
        """The response head with the first body part; ``end``: the body ends with it."""

    def send_body(self, cycle: Any, body: bytes, end: bool) -> None:
        """A further body part; ``end``: the body ends with it."""

    def send_informational(self, cycle: Any, status: int, headers: Any) -> None:
        """A 1xx response ahead of the final one (100 Continue, 103 Early Hints)."""

    def starts_before_body(self, cycle: Any) -> None:
        """The response starts while request body is still to come (``cycle.body_left``, and
        ``cycle.expect_100`` if the client waits for 100 Continue): what that means for the
        connection is the wire format's rule (HTTP/1.1 may have to close after the response)."""

    def send_trailers(self, cycle: Any, headers: Any) -> None:
        """The end of a response that announced trailers (its body went with ``end`` False):
        all its validated trailer fields at once, maybe none. Where the wire format or the
        client cannot take them (HTTP/1.1: no ``TE: trailers``, a content-length body), they are
        dropped and only the end of the body is written."""

    async def send_file(self, cycle: Any, head: Any, fd: int, offset: int, count: int, end: bool) -> None:
        """``count`` body bytes of the open file ``fd`` from ``offset`` (zero-copy where the wire
        format can), after the response head when ``head`` is not None (as for send_head); returns
        once they are handed over with bounded memory. Raises ClientDisconnected when the client
        goes first, FileEnded when the file holds fewer bytes than that (asgi/errors.py)."""

    def send_error(self, cycle: Any, status: int, reason: str, headers: Any = ()) -> None:
        """A complete plain-text response the server makes itself (500 for a failed app, 503 at
        the concurrency limit); HTTP/1.1 closes the connection after it."""

    def abort(self, cycle: Any) -> None:
        """The response cannot be completed: HTTP/1.1 closes the connection, HTTP/2 resets the stream."""

    def can_end_body(self, cycle: Any) -> bool:
        """Whether the body under way, its length unannounced, can still be ended properly (a
        chunked HTTP/1.1 body can), when the app returns mid-stream at shutdown."""


class FlowInfo(Protocol):
    """Back-pressure, both ways (http/flow.py's FlowControl)."""

    write_paused: bool

    def pause_reading(self, reason: int = ...) -> None: ...

    def resume_reading(self, reason: int = ...) -> None: ...

    async def drain(self) -> None: ...


class ConnectionInfo(Protocol):
    """What an ASGI HTTP cycle reads from and reports to the connection carrying it."""

    loop: asyncio.AbstractEventLoop
    config: Any  # fastserve.config.Config: timeout_request_body, limit_drain_body
    state: Any  # fastserve.state.ServerState: default headers, access log
    flow: Any  # a FlowInfo: http/flow.py's FlowControl
    sink: Any  # a ResponseSink: where the responses go
    closing: bool  # the server shuts down, or the connection closes after this response

    def discard_body(self, size: int) -> None:
        """Request body bytes arrived after the response was complete and were dropped."""

    def body_stalled(self, cycle: Any) -> None:
        """The app waited --timeout-request-body for request body bytes that did not come."""

    def on_response_complete(self, cycle: Any) -> None:
        """The response is complete (or abandoned): the next request may start."""

    def on_cycle_done(self, cycle: Any) -> None:
        """The app's Task has ended."""
