"""The asyncio protocol for one HTTP/2 connection: bytes -> codec events -> streams.

Each request stream is served by the same ASGI cycle as HTTP/1.1 (asgi/http_cycle.py), with an
H2Stream (stream.py) as its connection and sink. What is HTTP/2's own lives here: dispatching
the codec's events, writing its output, the stream count for --limit-concurrency, GOAWAY at
shutdown (the streams already accepted finish first), the idle timeout, rapid-reset counting,
and which frames count as frames without progress (flood.py keeps the count).
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import copy_context
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ..asgi.app_runner import APP_TASK_NAME, INLINE_TASK, new_task, run_app
from ..asgi.flow import FlowControl
from ..asgi.http_cycle import RequestResponseCycle
from ..asgi.scope import (
    connection_template,
    http_scope,
    offered_extensions,
    peer_name,
    scope_address,
)
from ..batching import HeldWriter
from ..proxy import forwarded_client
from .codec import (
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    ConnectionTerminated,
    Data,
    H2ProtocolError,
    PingAcked,
    PingReceived,
    QuietFrames,
    RequestHeaders,
    SettingsChanged,
    StreamReset,
    Trailers,
    WindowUpdated,
)
from .flood import MIN_USEFUL_CREDIT, WINDOW, FrameBudget
from .semantics import StreamError, request_head
from .stream import H2Stream
from .websocket_stream import H2WebSocketStream, websocket_request

if TYPE_CHECKING:
    from ..config import Config
    from ..state import ServerState

logger = logging.getLogger("fastserve.error")

# Client stream resets are counted per connection over this many seconds (--http2-max-resets).
RESET_WINDOW = 10.0
# At shutdown, an idle connection closes this long after its GOAWAY (the client reads it first).
SHUTDOWN_QUIET = 0.3
_RETRY_SOON = ((b"retry-after", b"1"),)
# A reason reading pauses for (asgi/flow.py's bits): the client is not reading our writes.
WRITE_BLOCKED = 8
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_UNKNOWN = object()  # H2Connection.ws_handler before the first extended CONNECT
# The ASGI extensions every stream offers (copied into each request's scope).
EXTENSIONS = offered_extensions(H2Stream.capabilities)


class H2Connection(asyncio.Protocol):
    is_websocket = False  # what the server registry counts as a WebSocket (metrics)

    def __init__(self, config: Config, app: Any, state: ServerState, codec_class: type, settings: Any,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config
        self.app = app
        self.state = state
        self.loop = loop or asyncio.get_event_loop()
        self.codec = codec_class(settings)
        self.streams: dict[int, H2Stream] = {}
        self.blocked: set[H2Stream | H2WebSocketStream] = set()  # streams with body waiting for window
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.writer: HeldWriter = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.closing = False
        self.closed = False
        self.accepted = 0  # streams accepted on this connection
        self.resets = 0
        self.reset_window_start = 0.0
        self.control_frames = FrameBudget(config.http2_max_control_frames)
        self.unpaid_credit = 0  # WINDOW_UPDATEs counted that a later one may refund (_on_credit)
        self.idle_since: float | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.health_path = config.health_path  # answered without the app (health.py)
        self.h1_body_left = 0  # h2c: bytes of the upgrade request's body still to come
        self.websockets: dict[int, H2WebSocketStream] = {}  # extended CONNECT streams (RFC 8441)
        self.ws_handler: Any = _UNKNOWN  # websocket.stream_handler, looked up at the first one
        self.output_held = False  # completed responses wait in the codec for the WriteBatch (flush)

    # -- asyncio callbacks ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self.start(transport, scope_address(transport.get_extra_info("sockname")),
                   scope_address(transport.get_extra_info("peername")), scheme)

    def start(self, transport: asyncio.Transport, server: Any, client: Any, scheme: str,
              upgraded: list | None = None) -> None:
        """Serve `transport` (new, or handed over by the HTTP/1.1 connection: preface sniffed,
        ALPN, or an h2c upgrade: `upgraded`, the events codec.initiate_upgrade() returned, its
        request as stream 1)."""
        self.transport = transport
        self.context = copy_context()  # what every stream's Task starts a copy of (see new_task)
        self.writer = HeldWriter(transport, self.state.write_batch)
        self.flow = FlowControl(transport, self.config.timeout_write, self._write_timed_out)
        self.server, self.client, self.scheme = server, client, scheme
        self.tls = self.state.tls.extension(transport) if self.state.tls is not None else None
        self.trusted_peer = self.config.proxy_headers and (
            client is None or client[0] in self.config.trusted_proxies
        )
        self.scope_template = connection_template(server, client, scheme, self.config.root_path)
        self._become_idle()
        if upgraded is None:
            self.codec.initiate_connection()
        else:
            for event in upgraded:
                self._dispatch(event)
        self.flush(False)
        # Registered after our SETTINGS are queued: during a shutdown this calls shutdown() at
        # once, and its GOAWAY must not come before the server preface.
        self.state.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connection_closed(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        for stream in list(self.streams.values()):
            stream.client_gone()
            stream.cycle.on_disconnect()
        for websocket in list(self.websockets.values()):
            websocket.connection_lost(exc)
        self.blocked.clear()
        if self.flow is not None:
            self.flow.connection_lost()
        self.writer.discard()

    def eof_received(self) -> bool:
        self.release()
        return False  # the client is gone: connection_lost tells every stream

    def pause_writing(self) -> None:
        # The client does not read what we send: stop reading what it sends too, or a flood of
        # PINGs, SETTINGS or requests would grow our write buffer (each one is answered).
        self.flow.pause_writing()
        self.flow.pause_reading(WRITE_BLOCKED)

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self.flow.resume_reading(WRITE_BLOCKED)

    def expect_h1_body(self, upgraded: list, length: int) -> None:
        """h2c: the upgrade request had a body; it comes as HTTP/1.1 bytes ahead of the preface,
        for stream 1 (the codec reported that stream half-closed)."""
        for event in upgraded:
            if type(event) is RequestHeaders and event.stream_id == 1:
                event.end_stream = False
                event.headers.append((b"content-length", b"%d" % length))
        self.h1_body_left = length

    def _take_h1_body(self, data: bytes) -> bytes:
        """Stream 1's HTTP/1.1 body, ahead of the HTTP/2 bytes: the rest of `data` is returned."""
        size = min(len(data), self.h1_body_left)
        self.h1_body_left -= size
        stream = self.streams.get(1)
        if stream is not None:
            stream.received += size
            cycle = stream.cycle
            if not (cycle.response_complete or cycle.disconnected):
                cycle.on_body(data[:size])
            if not self.h1_body_left:
                self._body_ended(stream)
        return data[size:]

    def data_received(self, data: bytes) -> None:
        if self.h1_body_left:
            data = self._take_h1_body(data)
            if not data:
                self.flush(False)
                return
        try:
            events = self.codec.receive_data(data)
        except H2ProtocolError as exc:
            self._connection_error(exc.error_code, str(exc))
            return
        for event in events:
            if type(event) is RequestHeaders:  # most events: _dispatch's call saved (-0.8k per GET)
                self._on_request(event)
            else:
                self._dispatch(event)
            if self.closed:
                return
        self.flush(False)

    def _dispatch(self, event: Any) -> None:
        kind = type(event)
        if kind is Data:
            self._on_data(event)
        elif kind is RequestHeaders:
            self._on_request(event)
        elif kind is WindowUpdated:
            self._on_credit(event.increment)
        elif kind is SettingsChanged:
            if self._no_progress(1):
                return
            for stream in list(self.blocked):
                stream.window_opened()
        elif kind is Trailers:
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self._body_ended(stream)
        elif kind is StreamReset:
            self._on_reset(event)
        elif kind is ConnectionTerminated:
            # The client's GOAWAY: it will not read what follows (h2 even refuses to send it).
            logger.debug("HTTP/2 client %s sent GOAWAY (code %d)", peer_name(self.client), event.error_code)
            self.release()
            self.writer.close()
            self.closed = True
        elif kind is PingReceived or kind is PingAcked:  # (we send no PING: any ACK is unsolicited)
            self._no_progress(1)
        elif kind is QuietFrames:
            self._no_progress(event.count)

    def _on_credit(self, increment: int) -> None:
        """A WINDOW_UPDATE: let the responses waiting for window go on. It is progress when one
        of them sends or is woken to; when none waits, when a response is under way (clients
        credit ahead of what they read). Otherwise it counts (flood.py), but the next one that
        does let a response go on refunds it: a client credits a stream and the connection one
        after the other, and only the second lets anything go. Credit of under 1 KiB counts."""
        blocked = list(self.blocked)
        if blocked:
            window = self.codec.send_window
            before = sum(window(stream.stream_id) for stream in blocked)
            for stream in blocked:
                stream.window_opened()
            waiting = self.blocked
            if sum(window(stream.stream_id) for stream in blocked) >= before and all(s in waiting for s in blocked):
                self.unpaid_credit = min(self.unpaid_credit + 1, len(blocked) + 1)  # nothing went
            elif increment >= MIN_USEFUL_CREDIT:
                self.control_frames.refund(self.unpaid_credit)
                self.unpaid_credit = 0
                return
        elif increment >= MIN_USEFUL_CREDIT and self._sending():
            return  # (a flood of it ends at the 2**31-1 window: FLOW_CONTROL_ERROR, both codecs)
        self._no_progress(1)

    def _sending(self) -> bool:
        """Whether a response (or a WebSocket) is under way: its head sent, its end not yet."""
        if self.websockets:
            return True
        return any(stream.cycle.head_sent and not stream.send_done for stream in self.streams.values())

    def _no_progress(self, frames: int) -> bool:
        """Count frames that made no progress (flood.py); past --http2-max-control-frames in
        10 s, end the connection. True when it has ended."""
        if not self.control_frames.spend(self.loop.time(), frames):
            return False
        logger.warning(
            "HTTP/2 client %s sent more than %d frames without progress (PING, SETTINGS, PRIORITY, "
            "WINDOW_UPDATE, empty DATA...) in %ds; closing (ENHANCE_YOUR_CALM).",
            peer_name(self.client), self.config.http2_max_control_frames, WINDOW,
        )
        self._enhance_your_calm()
        return True

    def _enhance_your_calm(self) -> None:
        """GOAWAY ENHANCE_YOUR_CALM, cancel the apps, close: a client abusing the protocol."""
        self.codec.close_connection(ENHANCE_YOUR_CALM)
        self.flush(False)
        self.abort_streams()
        self.writer.close()
        self.closed = True

    def _connection_error(self, error_code: int, reason: str) -> None:
        """The client broke HTTP/2: the codec has queued GOAWAY; write it and close."""
        logger.info("HTTP/2 connection error from %s: %s (code %d)", peer_name(self.client), reason, error_code)
        self.flush(False)
        self.writer.close()
        self.closed = True

    # -- requests -------------------------------------------------------------------------------
    def _on_request(self, event: RequestHeaders) -> None:
        if event.protocol is not None and self._websocket_handler() is not None:
            self._on_extended_connect(event)
            return
        try:
            cycle = request_head(event, self.client, self.scheme, self.trusted_peer, RequestResponseCycle)
        except StreamError as exc:
            logger.info("Refused an HTTP/2 request from %s: %s", peer_name(self.client), exc.reason)
            if exc.status is None:
                self.codec.reset_stream(event.stream_id, exc.error_code)
            else:
                self._answer(event.stream_id, exc.status, exc.reason)
            return
        if cycle.forwarded is not None:
            cycle.client, cycle.scheme = forwarded_client(
                cycle.forwarded, cycle.client, cycle.scheme, self.config.trusted_proxies
            )
        if len(self.streams) + len(self.websockets) >= self.codec.local_settings.max_concurrent_streams:
            # Streams the client reset whose apps still run count too (the codec forgot them):
            # resetting cannot buy a client more concurrent apps than the limit (CVE-2023-44487).
            self.codec.reset_stream(event.stream_id, REFUSED_STREAM)
            return
        stream = H2Stream(self, event.stream_id, cycle)
        # (ignore: H2Stream's sink, flow and closing are read-only properties, not variables)
        cycle.begin(stream, http_scope(cycle, self.scope_template, self.state, self.tls, EXTENSIONS))  # type: ignore[arg-type]
        cycle.more_body = not event.end_stream
        self.streams[event.stream_id] = stream
        self.idle_since = None
        self.accepted += 1
        cap = self.codec.max_streams_per_connection
        if cap is not None and self.accepted >= cap and not self.closing:
            # The codec ends the connection past `cap` streams: end it gracefully first.
            self.closing = True
            self.codec.close_connection(NO_ERROR, event.stream_id)
        self._start(cycle)

    def _start(self, cycle: RequestResponseCycle) -> None:
        state = self.state
        if self.health_path is not None and cycle.path == self.health_path:
            self._answer_health(cycle)
            return
        limit = self.config.limit_request_body
        if limit is not None and cycle.body_left > limit:  # a declared content-length over it
            cycle.sink.refuse_body(413, "Request body too large")
            self._maybe_forget(cycle.sink)
            return
        if state.limit_concurrency is not None and state.active_requests >= state.limit_concurrency:
            logger.warning("Concurrency limit of %d reached; answering 503.", state.limit_concurrency)
            cycle.status = 503
            cycle.head_sent = True
            cycle.sink.send_error(cycle, 503, "Service Unavailable", _RETRY_SOON)
            cycle.response_complete = True
            stream = cycle.sink
            stream.on_response_complete(cycle)
            self._maybe_forget(stream)
            return
        state.active_requests += 1
        if state.access_log is not None:
            cycle.start_time = perf_counter()
        if INLINE_TASK:  # as HTTPProtocol._start: new_task() inlined, a call and a done() less (-0.9k)
            cycle.task = asyncio.Task(  # type: ignore[call-arg]  # context=: 3.11+
                run_app(cycle, self.app), loop=self.loop, name=APP_TASK_NAME, context=self.context.copy()
            )
        else:
            task = new_task(run_app(cycle, self.app), self.loop, self.context)
            if not task.done():
                cycle.task = task

    def _answer(self, stream_id: int, status: int, reason: str) -> None:
        """A plain-text answer, no app involved (the request's body, if any, is credited as it comes)."""
        body = reason.encode("latin-1")
        fields = [*self.state.default_header_items, (b"content-type", b"text/plain; charset=utf-8")]
        if self.codec.send_window(stream_id) < len(body):  # a client that opened no window: the status alone
            self.codec.send_headers(stream_id, status, fields, True)
            return
        self.codec.send_headers(stream_id, status, [*fields, (b"content-length", b"%d" % len(body))])
        self.codec.send_data(stream_id, body, True)

    def _answer_health(self, cycle: RequestResponseCycle) -> None:
        """--health-path, answered without the app (see health.py): 200, or 503 once stopping."""
        stream = cycle.sink
        serving = not self.state.shutting_down
        body = b"OK\n" if serving else b"shutting down\n"
        cycle.status = 200 if serving else 503
        cycle.head_sent = cycle.response_complete = True
        cycle.bytes_sent = 0 if cycle.is_head else len(body)
        fields = [*self.state.default_header_items, (b"content-type", b"text/plain; charset=utf-8"),
                  (b"cache-control", b"no-store"), (b"content-length", b"%d" % len(body))]
        stream._send_headers(cycle.status, fields, cycle.is_head)
        if not cycle.is_head:
            stream._send_data(body, True)
        self.flush(True)
        stream.on_response_complete(cycle)
        self._maybe_forget(stream)

    def _on_data(self, event: Data) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            websocket = self.websockets.get(event.stream_id)
            if websocket is not None:
                websocket.on_data(event)
                return
            # a stream already over for us: credit the bytes, drop them
            self.acknowledge(event.stream_id, event.flow_controlled_length)
            return
        stream.unacked += event.flow_controlled_length
        cycle = stream.cycle
        data = event.data
        if data:
            stream.received += len(data)
            if stream.expected is not None and stream.received > stream.expected:
                self.stream_error(stream, PROTOCOL_ERROR, "request body longer than its content-length")
                return
            limit = self.config.limit_request_body
            if limit is not None and stream.received > limit and not cycle.disconnected:
                stream.refuse_body(413, "Request body too large")
                self._maybe_forget(stream)
                return
            cycle.on_body(data)
        if cycle.response_complete or cycle.disconnected:
            stream.resume_reading()  # nobody will take it: credit it now
        if event.end_stream:
            self._body_ended(stream)

    def _body_ended(self, stream: H2Stream) -> None:
        if stream.expected is not None and stream.received != stream.expected:
            self.stream_error(stream, PROTOCOL_ERROR, "request body shorter than its content-length")
            return
        cycle = stream.cycle
        cycle.more_body = False
        if cycle.waiter is not None:
            cycle.wake()

    def stream_error(self, stream: H2Stream, error_code: int, reason: str) -> None:
        """A request the client got wrong (or let stall): reset its stream, one log line."""
        logger.info("Reset an HTTP/2 stream from %s: %s", peer_name(self.client), reason)
        cycle = stream.cycle
        stream.reset(error_code)
        cycle.on_disconnect()
        self._maybe_forget(stream)

    def _on_reset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        websocket = self.websockets.get(event.stream_id) if stream is None else None
        if stream is None and websocket is None:
            # Not a stream being served: the codec's own refusals (REFUSED_STREAM, reported as
            # resets), zttp reporting again a stream already reset, or one already answered.
            # Only the resets that abandon work count toward --http2-max-resets; these are
            # frames without progress (a flood of malformed or empty HEADERS ends here).
            self._no_progress(1)
            return
        now = self.loop.time()
        if now - self.reset_window_start > RESET_WINDOW:
            self.reset_window_start, self.resets = now, 0
        self.resets += 1
        if self.resets > self.config.http2_max_resets:
            logger.warning(
                "HTTP/2 client %s reset more than %d streams in %ds; closing (ENHANCE_YOUR_CALM).",
                peer_name(self.client), self.config.http2_max_resets, RESET_WINDOW,
            )
            self._enhance_your_calm()
            return
        if websocket is not None:
            websocket.on_reset()
            return
        stream.client_gone()
        if stream.unacked:
            unacked, stream.unacked = stream.unacked, 0
            self.acknowledge(event.stream_id, unacked)
        stream.cycle.on_disconnect()
        self._maybe_forget(stream)

    def describe_client(self) -> str:
        return peer_name(self.client)

    def abort_streams(self) -> None:
        for stream in list(self.streams.values()):
            stream.client_gone()
            cycle = stream.cycle
            cycle.on_disconnect()
            task = cycle.task
            if task is not None:
                task.cancel()
                if not cycle.app_started:  # cancelled before its first step: run_app never runs
                    stream.on_cycle_done(cycle)

    # -- WebSockets over HTTP/2 (RFC 8441) --------------------------------------------------------
    def _websocket_handler(self) -> Any:
        """websocket.stream_handler, or None when WebSockets are off (an extended CONNECT is then
        answered 501 by semantics.request_head)."""
        handler = self.ws_handler
        if handler is _UNKNOWN:
            from ..websocket import stream_handler

            handler = self.ws_handler = stream_handler(self.config, self.app)
        return handler

    def _on_extended_connect(self, event: RequestHeaders) -> None:
        """An extended CONNECT: a WebSocket session on this stream (http2/websocket_stream.py)."""
        stream_id = event.stream_id
        try:
            request = websocket_request(event, self.client, self.scheme, self.trusted_peer)
        except StreamError as exc:
            logger.info("Refused an HTTP/2 WebSocket from %s: %s", peer_name(self.client), exc.reason)
            self.codec.reset_stream(stream_id, exc.error_code)
            return
        if request.forwarded is not None:
            request.client, request.scheme = forwarded_client(
                request.forwarded, request.client, request.scheme, self.config.trusted_proxies
            )
        if len(self.streams) + len(self.websockets) >= self.codec.local_settings.max_concurrent_streams:
            self.codec.reset_stream(stream_id, REFUSED_STREAM)
            return
        state = self.state
        if state.limit_concurrency is not None and state.active_requests >= state.limit_concurrency:
            logger.warning("Concurrency limit of %d reached; answering 503.", state.limit_concurrency)
            self._answer(stream_id, 503, "Service Unavailable")
            return
        state.active_requests += 1
        websocket = H2WebSocketStream(self, stream_id)
        self.websockets[stream_id] = websocket
        self.idle_since = None
        self.accepted += 1
        cap = self.codec.max_streams_per_connection
        if cap is not None and self.accepted >= cap and not self.closing:
            self.closing = True  # as for requests (_on_request): end gracefully before the codec does
            self.codec.close_connection(NO_ERROR, stream_id)
        self.ws_handler(self, request, event.protocol.decode("latin-1"), websocket)  # sets websocket.session
        if event.end_stream:
            websocket.on_end()

    def websocket_over(self, websocket: H2WebSocketStream) -> None:
        """A WebSocket stream is over (both ends, reset, or the connection gone)."""
        if self.websockets.pop(websocket.stream_id, None) is None:
            return
        self.state.active_requests -= 1
        self.blocked.discard(websocket)
        if not self.streams and not self.websockets and not self.closed:
            if self.closing:
                self.loop.call_soon(self._close_if_done)
            else:
                self._become_idle()

    # -- what the streams report ----------------------------------------------------------------
    # (A response complete, an app returned, END_STREAM or RST_STREAM out: H2Stream's
    # on_response_complete, on_cycle_done and _ended, which call _maybe_forget directly.)
    def _maybe_forget(self, stream: H2Stream) -> None:
        """A stream is over once its response is out and its app has returned."""
        cycle = stream.cycle
        if cycle is None or not stream.send_done or cycle.task is not None:
            return  # (None: forgotten already)
        if cycle.app_started and not (cycle.response_complete or cycle.disconnected):
            return  # the app has not settled its response yet
        if self.streams.pop(stream.stream_id, None) is None:
            return
        # The cycle refers to the stream: without this the pair (with the scope, the Task...)
        # would wait for the cyclic GC (-5.8k instructions per GET, callgrind). A forgotten
        # stream is reached only through its cycle, which no longer needs it back: its drain()
        # stops at send_done before reading it.
        stream.cycle = None
        if stream.unacked and not self.closed:
            unacked, stream.unacked = stream.unacked, 0
            self.acknowledge(stream.stream_id, unacked)
        if not self.streams and not self.websockets:
            if self.closing:
                self.loop.call_soon(self._close_if_done)
            else:
                self._become_idle()

    def acknowledge(self, stream_id: int, length: int) -> None:
        self.codec.acknowledge_received_data(stream_id, length)
        self.flush(False)

    def flush(self, end: bool) -> None:
        """Write what the codec queued: at once when the app may wait next; when it completes a
        response (`end`), at the end of the loop iteration (the WriteBatch calls release()), so
        the streams that complete in one iteration go out in one data_to_send() and one write
        (10 streams per read: 1 write instead of 5, and -3.1k instructions per request).
        Any earlier write or close takes what waits, in order: it is all in the codec."""
        if end:
            if not self.output_held:
                self.output_held = True
                self.state.write_batch.add(self)
            return
        self.release()

    def release(self) -> None:
        """Write all the codec holds (see flush)."""
        self.output_held = False
        data = self.codec.data_to_send()
        if data and not self.closed:
            self.writer.write_now(data)

    # -- idle timeout and shutdown --------------------------------------------------------------
    def _become_idle(self) -> None:
        if self.closed:
            return
        self.idle_since = self.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_at(self.idle_since + self.config.timeout_keep_alive, self._idle_check)

    def _idle_check(self) -> None:
        self.idle_timer = None
        if self.idle_since is None or self.streams or self.websockets or self.closed:
            return  # busy: armed again once the last stream is over
        deadline = self.idle_since + self.config.timeout_keep_alive
        if self.loop.time() < deadline:
            self.idle_timer = self.loop.call_at(deadline, self._idle_check)
            return
        self.codec.close_connection(NO_ERROR)
        self.flush(False)
        self.writer.close()
        self.closed = True

    def shutdown(self) -> None:
        """Server is stopping: GOAWAY (the streams already accepted finish), then close."""
        if self.closed:
            return
        if not self.closing:
            self.closing = True
            self.codec.close_connection(NO_ERROR)
            self.flush(False)
        for stream in self.streams.values():
            cycle = stream.cycle
            if cycle.head_sent and not cycle.more_body:
                cycle.wake()  # a streaming response's app waiting in receive() hears http.disconnect
        if not self.streams and not self.websockets:
            self.loop.call_later(SHUTDOWN_QUIET, self._close_if_done)

    def _close_if_done(self) -> None:
        if not self.streams and not self.websockets and not self.closed:
            self.release()
            self.writer.close()
            self.closed = True

    def _write_timed_out(self) -> None:
        """--timeout-write: the client has read nothing of the connection for that long (whatever
        the stream windows say: --http2-timeout-window is per stream). No frame can reach it, not
        even GOAWAY: drop the connection; each stream's app sees the client gone."""
        streams = len(self.streams) + len(self.websockets)
        doing = f"{streams} streams were being served" if streams else "its last responses were waiting to be read"
        logger.info(
            "Aborted the HTTP/2 connection from %s: it read nothing for %gs while %s (--timeout-write)",
            peer_name(self.client), self.config.timeout_write, doing,
        )
        self.writer.abort()
        self.closed = True

    def abort(self) -> None:
        """Graceful shutdown timed out: cancel the apps and drop the connection."""
        self.abort_streams()
        self.writer.abort()
        self.closed = True
