"""The asyncio protocol for one HTTP/1.1 connection.

A parser adapter (httptools or h11) turns bytes into four calls: ``on_request``, ``on_body``,
``on_message_complete`` and, for upgrades, ``switch_protocols``. Everything after that - request
validation, the scope, pipelining, keep-alive, shutdown - is written once, here and in ``cycle.py``.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import CancelledError, Task, current_task
from collections import deque
from contextvars import copy_context
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ..asgi.app_runner import APP_TASK_NAME, INLINE_TASK, enter_task, leave_task, new_task, run_app
from ..asgi.flow import BACKLOG, BODY, PARSER, FlowControl
from ..asgi.http_cycle import RequestResponseCycle
from ..asgi.scope import (
    connection_template,
    http_scope,
    offered_extensions,
    peer_name,
    scope_address,
)
from ..asgi.step import FINISHED, first_step
from ..batching import HeldWriter
from ..compiled import mypyc_attr
from ..proxy import forwarded_client
from .errors import BadRequest, StopReading, tls_on_plain_port
from .render import simple_response
from .semantics import H2C, KNOWN_METHODS, request_head  # noqa: F401  (KNOWN_METHODS: moved there)
from .writer import H1Writer

if TYPE_CHECKING:
    from ..asgi.request import RequestHead
    from ..config import Config
    from ..state import ServerState

logger = logging.getLogger("fastserve.error")

# At shutdown, how long a connection that has not sent its first request yet may still send it.
FIRST_REQUEST_GRACE = 0.5
# At shutdown, an idle keep-alive connection is closed once no request came for this long: a client
# sends its next request right after a response, and closing under it fails that request (a reset,
# or a close before any response byte, which clients do not retry). The request is answered with
# "connection: close" instead; a client quiet this long sees the close before it sends.
SHUTDOWN_QUIET = 0.3
# Lingering close (see HTTPProtocol._close_lingering) ends after --timeout-linger in all, after
# LINGER_IDLE without input, or once LINGER_BYTES more arrived. nginx waits 5 s between reads
# (lingering_timeout) for 30 s at most (lingering_time): a client that has read its answer stops
# sending at once, so a second of silence means it has, and a few seconds in all hold a socket
# no longer than an idle keep-alive connection does. The byte bound caps the CPU one client can
# spend on a refused connection (a local flood arrives at ~1 GB/s: the time bound alone would let
# it run for seconds); 16 MiB is seconds of upload on most real links.
LINGER_IDLE = 1.0
LINGER_BYTES = 16 * 1024 * 1024
# One connection pipelining thousands of requests in one read must not hold the event loop: a read
# larger than FEED_DIRECT is fed to the parser up to REQUESTS_PER_TURN request heads at a time, the
# rest kept (reading paused) for later loop iterations, and for once the responses ahead are done.
FEED_DIRECT = 2048
REQUESTS_PER_TURN = 32
# Idle connections are closed by one sweep per server (_sweep_idle), not a timer each: a timer
# made and cancelled per connection was ~8k instructions of a Connection: close request. It runs
# every SWEEP_INTERVAL, or a quarter of --timeout-keep-alive when that is shorter (not under
# SWEEP_INTERVAL_MIN), while HTTP/1.1 connections are open; so a connection idle for the timeout
# is closed up to one interval later.
SWEEP_INTERVAL = 1.0
SWEEP_INTERVAL_MIN = 0.01
_RETRY_SOON = ((b"retry-after", b"1"),)  # the 503 at --limit-concurrency
# An h2c upgrade request's body is read whole before the switch up to this size (the HTTP/2
# initial window: what stream 1 could have sent without credit); a larger one stays HTTP/1.1.
H2C_BODY_LIMIT = 65535
_SWITCHING_TO_H2C = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
# Fields of an h2c upgrade request that do not carry over to its HTTP/2 stream (RFC 9113 8.2.2).
_H2C_HOP_FIELDS = frozenset(
    (b"connection", b"upgrade", b"http2-settings", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te")
)


EXTENSIONS = offered_extensions(H1Writer.capabilities)  # what every connection's scope offers


# Operations features subclass it where they are on (negotiate.protocol_class_for): in the compiled
# build (setup.py) a Python subclass of a compiled class must be allowed by name.
@mypyc_attr(allow_interpreted_subclasses=True)
class HTTPProtocol(asyncio.Protocol):
    is_websocket = False  # what the server registry counts as a WebSocket (metrics)
    __slots__ = (
        "config",
        "app",
        "state",
        "loop",
        "parser",
        "transport",
        "flow",
        "server",
        "client",
        "scheme",
        "trusted_peer",
        "tls",
        "cycle",
        "active",
        "pipeline",
        "idle_since",
        "head_timer",
        "head_deadline",
        "closing",
        "eof",
        "upgrade_request",
        "upgrade_leftover",
        "switched",
        "pending_refusal",
        "refused",
        "unread_input",
        "drain_left",
        "linger_deadline",
        "linger_timer",
        "linger_seen",
        "scope_template",
        "extensions",
        "context",
        "writer",
        "sink",
        "backlog",
        "backlog_scheduled",
        "idle_runner",
        "runner_task",
        "cancelled_handoff",
        "client_closes",
    )

    def __init__(self, config: Config, app: Any, state: ServerState, parser_class: type, loop=None) -> None:
        self.config = config
        self.app = app
        self.state = state
        self.loop = loop or asyncio.get_event_loop()
        self.parser = parser_class(self, config)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]  # set in connection_made
        self.cycle: H1Cycle | None = None  # the request the parser is filling
        self.active: H1Cycle | None = None  # the request whose response is under way
        self.pipeline: deque[H1Cycle] = deque()
        self.idle_since: float | None = None
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_deadline: float | None = None
        self.closing = False
        self.eof = False
        self.upgrade_request: RequestHead | None = None
        self.upgrade_leftover: bytes | None = None  # an upgrade waiting for earlier responses
        self.switched = False
        self.pending_refusal: BadRequest | None = None
        self.refused = False  # answered one malformed request: later ones are neither parsed nor logged
        self.unread_input = False  # requests pipelined after one the connection closes after
        self.drain_left = 0  # request body bytes still to discard after a response (_drain_body)
        self.linger_deadline: float | None = None  # set while closing lingeringly
        self.linger_timer: asyncio.TimerHandle | None = None
        self.linger_seen = 0
        self.backlog: bytes | None = None  # read but not fed to the parser yet (reading paused)
        self.backlog_scheduled = False
        # The app Task waiting for this connection's next request (see _serve), and its Future.
        self.idle_runner: asyncio.Future | None = None
        self.runner_task: asyncio.Task | None = None
        # (that Future, the app coroutine, its Context.run): an app _start began cancelled its own Task
        self.cancelled_handoff: tuple | None = None
        self.client_closes = False  # a request said the connection ends after it (see _close)

    # -- asyncio callbacks ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # (What this uses is imported at module level: imports in here cost ~23k instructions per connection.)
        self.transport = transport
        state = self.state
        self.writer = HeldWriter(transport, state.write_batch)
        self.sink = H1Writer(self.writer, state)  # renders every response of the connection
        self.flow = FlowControl(transport, self.config.timeout_write, self._write_timed_out)
        self.server = scope_address(transport.get_extra_info("sockname"))  # (uvloop asked the socket once)
        self.client = scope_address(transport.get_extra_info("peername"))
        tls = state.tls  # (set when the server serves TLS: cheaper than asking the transport)
        self.scheme = "https" if tls is not None else "http"
        self.tls = tls.extension(transport) if tls is not None else None
        self.trusted_peer = self.config.proxy_headers and (
            self.client is None or self.client[0] in self.config.trusted_proxies
        )
        self.scope_template = connection_template(self.server, self.client, self.scheme, self.config.root_path)
        self.extensions = EXTENSIONS  # copied into each request's scope
        self.context = copy_context()  # what every request's Task starts from (see new_task)
        state.connection_opened(self)
        self.idle_since = self.loop.time()
        if state.idle_sweep is None:
            _start_sweep(state, self.loop, self.config.timeout_keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connection_closed(self)
        if self.head_timer is not None:
            self.head_timer.cancel()
        if self.linger_timer is not None:
            self.linger_timer.cancel()
        for cycle in (self.active, self.cycle, *self.pipeline):
            if cycle is not None:
                cycle.on_disconnect()
        self.pipeline.clear()
        self.backlog = None
        self._release_runner()
        if self.flow is not None:
            self.flow.connection_lost()
        # Break the reference cycles (protocol <-> adapter <-> parser, protocol <-> cycle), so
        # that reference counting frees the connection at once instead of the cyclic GC.
        self.parser.close()
        self.cycle = self.active = None
        self.writer.discard()

    def eof_received(self) -> bool:
        # A FIN means the client is gone, as apps waiting for http.disconnect expect; returning
        # False lets asyncio close the transport, and connection_lost tells every cycle.
        self.eof = True
        self.writer.release()  # a response already made still goes out before the close
        active = self.active
        if active is not None and not active.app_started and not active.more_body:
            # The request arrived whole with the FIN and its app has not run yet (it runs in its
            # Task on the next loop iteration): answer it as if it had run at once, then close
            # (on_response_complete sees eof).
            return True
        return False

    def data_received(self, data: bytes) -> None:
        self.idle_since = None
        if len(data) > FEED_DIRECT or self.backlog is not None:
            self._feed_rationed(data)
            return
        try:
            self.parser.feed(data)
        except BadRequest as exc:
            if self.cycle is None:  # the first bytes of the connection (refusal path only)
                if self._take_over_h2(data):
                    return
                exc = tls_on_plain_port(exc, data)
            self.refuse(exc)
            return
        if self.parser.in_head and self.head_deadline is None and not self.switched:
            self._watch_head()

    def _take_over_h2(self, data: bytes) -> bool:
        """The connection opened with the HTTP/2 preface (cleartext prior knowledge) and both
        parsers refused it: hand the connection, with this read, to HTTP/2 when it is on. On the
        refusal path only, so HTTP/1.1 requests pay nothing for it. (A preface split before its
        first 16 bytes reached the parser still gets the 400 with the hint.)"""
        takeover = self.state.h2_takeover
        if takeover is None or not self.state.h2_prior_knowledge or not data.startswith(b"PRI * HTTP/2.0\r\n"):
            return False
        self.switched = True
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        self.head_deadline = None
        self.flow.hand_over()  # HTTP/2 watches its own writes
        self.state.connection_closed(self)
        self.parser.close()
        takeover(self.transport, self.server, self.client, self.scheme, data, None)
        return True

    def _switch_to_h2(self, leftover: bytes) -> None:
        """h2c: 101 Switching Protocols, then the request is HTTP/2 stream 1 (RFC 7540 3.2). An
        HTTP2-Settings value the codec refuses is answered with 400 instead."""
        request, self.upgrade_request = self.upgrade_request, None
        assert request is not None  # (switch_protocols calls this for the upgrade request only)
        if self.backlog is not None:
            leftover, self.backlog = leftover + self.backlog, None
        collected = self.cycle
        if type(collected) is H2cBody:  # h11 parsed the body: it goes first, as it came
            leftover = b"".join(collected.parts) + leftover
            self.cycle = None
        target = request.raw_path + (b"?" + request.query_string if request.query_string else b"")
        # (content-length too: zttp refuses it on a stream it sees half-closed; HTTP/2 puts it back)
        fields = [(n, v) for n, v in request.headers if n not in _H2C_HOP_FIELDS and n != b"content-length"]
        settings = next(v for n, v in request.headers if n == b"http2-settings")
        self.writer.release()  # responses to requests pipelined ahead of the upgrade
        upgrade = (settings, (request.method.encode(), target, fields), _SWITCHING_TO_H2C, request.body_left)
        h2 = self.state.h2_takeover(self.transport, self.server, self.client, self.scheme, leftover, upgrade)
        if h2 is None:
            self.refuse(BadRequest(400, "Invalid h2c upgrade: HTTP2-Settings or a request HTTP/2 refuses"))
            return
        self.switched = True
        self._release_runner()
        if self.head_timer is not None:
            self.head_timer.cancel()
        if self.flow.write_paused:  # answers ahead of the upgrade are still unread: HTTP/2 watches now
            h2.pause_writing()
        self.flow.hand_over()
        self.state.connection_closed(self)
        self.parser.close()  # (the request is counted when stream 1's response is complete)

    # -- pipelining: a bounded amount of work per read ------------------------------------------
    def _feed_rationed(self, data: bytes) -> None:
        """Feed up to REQUESTS_PER_TURN request heads; keep the rest for later (see FEED_DIRECT)."""
        if type(self.parser) is DiscardInput:  # refused or lingering: nothing is parsed, all is dropped
            self.parser.feed(data)
            return
        if self.backlog is not None:  # reading is paused, yet bytes came: they follow the backlog
            self.backlog += data
            return
        end = _after_heads(data, REQUESTS_PER_TURN)
        try:
            self.parser.feed(data if end == len(data) else data[:end])
        except BadRequest as exc:
            if self.cycle is None and self._take_over_h2(data):
                return
            self.refuse(exc)
            return
        if end != len(data):
            self._keep(data[end:])
        if self.parser.in_head and self.head_deadline is None and not self.switched:
            self._watch_head()

    def _keep(self, rest: bytes) -> None:
        if self.switched:  # the WebSocket session has the connection now
            self.transport.get_protocol().data_received(rest)
            return
        if self.upgrade_leftover is not None:  # the upgrade waits for the responses ahead of it
            self.upgrade_leftover += rest
            return
        if self.transport.is_closing():
            return  # refused, or answered for the last time: the rest is never read
        self.backlog = rest
        self.flow.pause_reading(BACKLOG)
        if not self._backlog_waits():
            self._schedule_backlog()  # else once the responses ahead are done (on_response_complete)

    def _backlog_waits(self) -> bool:
        """Whether the backlog waits for the responses ahead: requests wait for them (queued, or
        held by h11) and the request being received is complete (its body needs the backlog)."""
        cycle = self.cycle
        if cycle is not None and cycle.more_body:
            return False
        return bool(self.pipeline) or self.parser.waiting

    def _schedule_backlog(self) -> None:
        if not self.backlog_scheduled:
            self.backlog_scheduled = True
            self.loop.call_soon(self._feed_backlog)

    def _feed_backlog(self) -> None:
        self.backlog_scheduled = False
        if self.active is None and self.pipeline:
            return  # the next queued request starts first (then _start_pipelined calls again)
        data = self._take_backlog()
        if data is None or self.transport.is_closing():
            return
        self.idle_since = None
        self._feed_rationed(data)
        if self.backlog is None and not self.pipeline:  # (fed all: kept none again)
            self.flow.resume_reading(BACKLOG)

    def _take_backlog(self) -> bytes | None:
        # (a method, so that the compiled build reads self.backlog anew after feeding: mypyc
        # would take it for still None after a "self.backlog = None" in the same function)
        data, self.backlog = self.backlog, None
        return data

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # -- parser adapter callbacks ---------------------------------------------------------------
    def on_request(self, method: bytes, target: bytes, http_version: str, headers: list) -> None:
        """A complete request head, with header names lower-cased by the adapter."""
        if self.head_deadline is not None:
            self.head_deadline = None  # arrived in time; a pending timer finds nothing to do
        previous = self.cycle
        if previous is not None and not previous.keep_alive:
            # Pipelined after a request the connection closes after: never read, never answered,
            # whatever each parser thinks of keep-alive (so no response to a smuggled request).
            self.unread_input = True
            raise StopReading
        # The request head is the cycle itself (one object per request; see RequestResponseCycle).
        cycle = request_head(
            method, target, http_version, headers, self.client, self.scheme, self.trusted_peer, self.parser,
            H1Cycle,
        )
        if cycle.forwarded is not None:
            cycle.client, cycle.scheme = forwarded_client(
                cycle.forwarded, cycle.client, cycle.scheme, self.config.trusted_proxies
            )
        if cycle.upgrade and self._takes_upgrade(cycle, method):
            # The adapter calls switch_protocols() once it has stopped parsing HTTP.
            self.upgrade_request = cycle  # the request head is all the handshake needs
            # Its message-complete is not the previous request's. (An h2c request's body, which
            # h11 parses ahead of the switch, is collected for stream 1 instead.)
            self.cycle = H2cBody() if cycle.upgrade == H2C and cycle.body_left else None
            return
        if not cycle.keep_alive:
            self.client_closes = True  # (Connection: close, or HTTP/1.0 without keep-alive)
        elif self.closing:
            cycle.keep_alive = False
        cycle.begin(self, http_scope(cycle, self.scope_template, self.state, self.tls, self.extensions))
        self.cycle = cycle
        if self.active is None:
            self._start(cycle)
        else:
            # Pipelined: answered in order once the responses ahead of it are complete.
            self.pipeline.append(cycle)
            self.flow.pause_reading(BACKLOG)

    def _takes_upgrade(self, cycle: H1Cycle, method: bytes) -> bool:
        """Whether the upgrade asked for is made (else the request is served as HTTP/1.1, as
        RFC 9110 7.8 allows): a WebSocket GET with WebSockets on; h2c with HTTP/2 on, naming
        HTTP2-Settings in Connection, with no body or a body of a declared length up to
        H2C_BODY_LIMIT (it is read whole before the switch; a longer or chunked one, or one
        behind pipelined requests, is answered over HTTP/1.1)."""
        if cycle.upgrade is True:
            return self.state.ws_handler is not None and method == b"GET"
        state = self.state
        if cycle.upgrade != H2C or state.h2_takeover is None or not state.h2c_upgrade or cycle.expect_100:
            return False
        if cycle.body_left and not (
            0 < cycle.body_left <= H2C_BODY_LIMIT and self.active is None and not self.pipeline
        ):
            return False
        settings = connection = None
        for name, value in cycle.headers:
            if name == b"http2-settings":
                if settings is not None:
                    return False
                settings = value
            elif name == b"connection":
                connection = value.lower()
        return settings is not None and connection is not None and b"http2-settings" in connection

    def on_body(self, data: bytes) -> None:
        cycle = self.cycle
        assert cycle is not None  # (the adapter calls this between on_request and on_message_complete)
        cycle.on_body(data)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None:
            cycle.more_body = False  # inlined cycle.on_message_complete(): once per request
            if cycle.waiter is not None:
                cycle.wake()
            if self.active is None and not self.pipeline and not self.closing:
                # The app answered before the request had fully arrived: idle now.
                self.idle_since = self.loop.time()

    def switch_protocols(self, leftover: bytes) -> None:
        """Hand the connection to the WebSocket session (called by the adapter), once the responses
        to requests pipelined ahead of the upgrade are complete."""
        if self.active is not None or self.pipeline:
            self.upgrade_leftover = leftover
            self.flow.pause_reading(BACKLOG)
            return
        request = self.upgrade_request
        assert request is not None  # (the adapter calls this after an upgrade request only)
        if request.upgrade == H2C:
            self._switch_to_h2(leftover)
            return
        self.switched = True
        self._release_runner()
        self.writer.release()  # responses to requests pipelined ahead of the upgrade
        self.upgrade_request = None
        if self.backlog is not None:  # read after the upgrade, not fed yet (h11 held the upgrade)
            leftover, self.backlog = leftover + self.backlog, None
        self.flow.hand_over()  # the session watches its own writes (from our write_paused)
        state = self.state
        state.connection_closed(self)
        state.ws_handler(self, request, leftover)
        self.parser.close()  # HTTP parsing is over (and the reference cycle with it)
        state.response_complete(self, None)  # a WebSocket session counts as one request

    # -- request lifecycle ----------------------------------------------------------------------
    def _start(self, cycle: H1Cycle) -> None:
        self.active = cycle
        state = self.state
        if state.limit_concurrency is not None and state.active_requests >= state.limit_concurrency:
            logger.warning("Concurrency limit of %d reached; answering 503.", state.limit_concurrency)
            cycle.status = 503
            cycle.head_sent = True
            self.sink.send_error(cycle, 503, "Service Unavailable", _RETRY_SOON)
            cycle.response_complete = True
            self.on_response_complete(cycle)
            return
        state.active_requests += 1
        if state.access_log is not None:
            cycle.start_time = perf_counter()  # loop.time() is cached per iteration on uvloop (ms)
        # The app always runs inside its own Task: apps rely on asyncio.current_task() from their
        # first line (anyio task groups: Starlette's BaseHTTPMiddleware, FastAPI's middleware,
        # sse-starlette; asyncio.timeout). On Python 3.12+ its first step runs at once, in this
        # call (eager start): a response made without awaiting anything costs no loop round trip.
        # The Task runs in a fresh copy of the connection's context, so context variables never
        # leak between requests (see new_task).
        if INLINE_TASK:
            runner = self.idle_runner
            if runner is not None:
                # The connection's app Task waits for a request (see _serve): the app runs in it,
                # its first step here and now, as that Task's (asyncio.current_task() is it; as
                # 3.12's eager start does), in a fresh copy of the connection's context. No Task
                # to make, no loop iteration before the app runs: 70.6k -> 67.0k instructions per
                # keep-alive GET (callgrind); written out here rather than in a method: -0.8k.
                # If the app then waits for something, the Task drives the rest.
                self.idle_runner = None
                if not runner.done():  # (cancelled while idle: that Task ends, a new one serves)
                    task = self.runner_task
                    assert task is not None  # (set with idle_runner: see _serve)
                    cycle.task = task
                    coro = run_app(cycle, self.app)
                    run = self.context.copy().run
                    loop = self.loop
                    try:
                        enter_task(loop, task)
                    except RuntimeError:  # inside another Task's step (h11 starts a request from a send()):
                        runner.set_result((coro, run, _NOT_STARTED))  # the Task starts it, next iteration
                        return
                    try:
                        step = first_step(run, coro)
                    except CancelledError:  # the app ended as a cancelled Task does (run_app settled it)
                        if not runner.done():
                            runner.set_result(None)  # so does its Task
                        return
                    except BaseException:  # KeyboardInterrupt, SystemExit: on to the loop, as from a Task
                        if not runner.done():
                            runner.set_result(None)
                        raise
                    finally:
                        leave_task(loop, task)
                    if step is FINISHED:  # answered at once (run_app settles every failure)
                        if not runner.done():  # (the app cancelled its Task: that Task ends, see _serve)
                            self.idle_runner = runner  # waits on for the next request
                        return
                    if runner.done():  # the app cancelled its own Task (so the Future it waited on), then waited
                        self.cancelled_handoff = (runner, coro, run)  # the Task throws the cancel in (see _serve)
                        return
                    runner.set_result((coro, run, step))  # the app waits for something: its Task goes on
                    return
            # new_task() inlined: a call and a done() less per request (~950 instructions, callgrind).
            # A keep-alive request's Task serves the connection's next requests too (see _serve).
            cycle.task = Task(  # type: ignore[call-arg]  # context=: 3.11+
                self._serve(cycle) if cycle.keep_alive else run_app(cycle, self.app),
                loop=self.loop, name=APP_TASK_NAME, context=self.context.copy(),
            )
        else:
            task = new_task(run_app(cycle, self.app), self.loop, self.context)
            if not task.done():
                cycle.task = task

    async def _serve(self, cycle: H1Cycle) -> None:
        """The app Task of a keep-alive request: runs ``cycle``'s app in the Task's own context (a
        fresh copy of the connection's); then, while the connection has no other Task waiting,
        serves the connection's next requests in turn (see _start), each app in a fresh copy of
        the connection's context (so no context variable leaks to the next request). A Task
        asked to cancel, even if the app caught it, serves no other request."""
        await run_app(cycle, self.app)
        task = current_task()
        assert task is not None  # (this coroutine runs as a Task)
        while not (self.idle_runner is not None or task.cancelling() or self.switched or self.transport.is_closing()):
            self.runner_task = task
            waiter = self.idle_runner = self.loop.create_future()
            try:
                handoff = await waiter
            except CancelledError as exc:
                if self.idle_runner is waiter:
                    self.idle_runner = None
                if waiter.cancelled():
                    handoff = self.cancelled_handoff
                    if handoff is None or handoff[0] is not waiter:
                        raise  # cancelled while idle: this Task ends
                    self.cancelled_handoff = None
                    _, coro, run = handoff
                elif waiter.result() is None:
                    raise  # released meanwhile
                else:  # cancelled after an app _start began on it went to wait
                    coro, run, _ = waiter.result()
                step = exc  # the app's own cancel: thrown into it
            else:
                if handoff is None:
                    return  # released: the connection serves no more requests
                coro, run, step = handoff
            # An app _start began, which waits for something (or, from inside another Task's
            # step, not started yet; or to be told of its own cancel): this Task drives the rest.
            try:
                if step is _NOT_STARTED:
                    step = run(coro.send, None)
                elif step.__class__ is CancelledError:
                    step = run(coro.throw, step)
            except StopIteration:
                continue
            await _InContext(coro, run, step)

    def _release_runner(self) -> None:
        """The connection serves no more HTTP/1.1 requests: the idle app Task ends."""
        runner = self.idle_runner
        if runner is not None:
            self.idle_runner = self.runner_task = None
            if not runner.done():
                runner.set_result(None)

    def _start_pipelined(self) -> None:
        if self.active is None and self.pipeline and not self.transport.is_closing():
            self._start(self.pipeline.popleft())
            if self.backlog is not None and not self._backlog_waits():
                self._schedule_backlog()  # the request just started may need its body from it

    def on_cycle_done(self, cycle: H1Cycle) -> None:
        self.state.active_requests -= 1
        cycle.task = None
        if self.closing and self.active is None and not self.pipeline and self.linger_deadline is None:
            if self.pending_refusal is None and self.state.shutting_down:
                return  # closed once quiet (see shutdown()), not under a keep-alive client's next request
            self.writer.close()  # (a lingering close ends by itself)

    def _next_started(self) -> bool:
        """Whether the adapter started the next request (h11: one it held) or switched protocols.
        (A method, so that the compiled build reads self.active anew: see _take_backlog.)"""
        return self.active is not None or self.switched

    def on_response_complete(self, cycle: H1Cycle) -> None:
        state = self.state
        state.response_complete(self, cycle)
        if cycle is not self.active:
            return
        self.active = None
        if not cycle.keep_alive or cycle.disconnected:
            self._close()
            return
        if self.closing:
            if self.pipeline:
                self.loop.call_soon(self._start_pipelined)
            elif self.pending_refusal is None and self.state.shutting_down:
                # Its head went out before the shutdown, saying keep-alive: close once quiet.
                self.idle_since = self.loop.time()
                self._close_when_quiet()
            else:
                self._close_after_refusal()
            return
        if self.parser.wants_response_complete:
            try:
                self.parser.response_complete()  # h11 may deliver a buffered pipelined request here
            except BadRequest as exc:
                self.refuse(exc)
                return
            if self._next_started():
                if self.backlog is not None and not self._backlog_waits():
                    self._schedule_backlog()  # h11 started a request whose body is in the backlog
                return
        if self.pipeline:
            self.loop.call_soon(self._start_pipelined)
            return
        if self.upgrade_leftover is not None:
            leftover, self.upgrade_leftover = self.upgrade_leftover, None
            self.switch_protocols(leftover)
            return
        if self.eof:
            self.writer.close()
            return
        if self.flow.read_paused:
            if self.backlog is not None:  # (a backlog is only ever kept with reading paused)
                self._schedule_backlog()  # reading resumes once the backlog is fed
                current = self.cycle
                if current is not None and current.more_body and current.body_left:
                    self._drain_body(current)  # the rest of its body may be in the backlog, or not
                return
            self.flow.resume_reading(BODY | BACKLOG)
        current = self.cycle
        if current is None or not current.more_body:
            self._become_idle()
        elif current.body_left:
            self._drain_body(current)
        # else: a request without a body, answered before its end was parsed: idle once it is

    def refuse(self, error: BadRequest) -> None:
        """Answer a malformed request with a 4xx and close; no app ever sees it. Nothing after it is
        parsed, answered or logged (one log line per connection, however much junk follows)."""
        if self.refused:
            return
        self.refused = True
        logger.info("Refused a request from %s: %s (%d)", peer_name(self.client), error.reason, error.status)
        self._stop_parsing()
        self.closing = True
        broken = self.cycle if self.cycle is not None and self.cycle.more_body else None
        if broken is not None:
            broken.on_disconnect()  # its body is unusable: the app sees http.disconnect
            if broken.response_complete:
                self._close_lingering()  # already answered; a 400 now would answer nothing
                return
            if broken is self.active:
                if not broken.head_sent:
                    broken.head_sent = broken.response_complete = True
                    self.writer.write(simple_response(error.status, error.reason))
                self._close_lingering()
                return
            self.pipeline.remove(broken)
        if self.active is None and not self.pipeline:
            self.writer.write(simple_response(error.status, error.reason))
            self._close_lingering()
        else:
            self.pending_refusal = error  # answered after the responses queued ahead of it

    def _close_after_refusal(self) -> None:
        error, self.pending_refusal = self.pending_refusal, None
        if error is not None:
            self.writer.write(simple_response(error.status, error.reason))
        self._close()

    def _close(self) -> None:
        """Close after the last response: lingeringly if input may be left unread."""
        cycle = self.cycle
        if (
            self.refused
            or self.unread_input
            or self.parser.holds_input
            or (cycle is not None and cycle.more_body and cycle.body_left)
        ):
            self._close_lingering()
        elif self.client_closes and self.client is not None and self.state.tls is None:
            # Plain TCP, and the client asked for the close, so it sends nothing more: the last
            # response and the FIN go in one segment (a close the server decided may race a
            # pipelining client's next request; it closes as before).
            self.writer.close_with_fin()
        else:
            self.writer.close()

    def _stop_parsing(self) -> None:
        if type(self.parser) is not DiscardInput:
            self.parser = DiscardInput(self, self.parser)
        self.backlog = None  # requests read but not parsed yet: never parsed now

    # -- request body left unread, lingering close --------------------------------------------------
    def _drain_body(self, cycle: H1Cycle) -> None:
        """The response is complete before the request body the app did not read: read and drop
        the rest, at most --limit-drain-body within --timeout-keep-alive, and serve the next request
        on the connection; otherwise close. (Without this a client that sends part of a body and
        goes silent would hold the connection forever: no timer runs while body is outstanding.)"""
        cycle.body = []  # what the app never took
        limit = self.config.limit_drain_body
        if cycle.body_left > limit:  # (the head said "connection: close" when it could)
            self._close_lingering()
            return
        self.drain_left = limit
        # Not cancelled when the body ends in time: it then finds another cycle, or this one complete.
        self.loop.call_later(self.config.timeout_keep_alive, self._drain_expired, cycle)

    def discard_body(self, size: int) -> None:
        """Body bytes of a request whose response is complete arrived and were dropped."""
        self.drain_left -= size
        if self.drain_left < 0 and self.linger_deadline is None:
            self._close_lingering()

    def _drain_expired(self, cycle: H1Cycle) -> None:
        if cycle is self.cycle and cycle.more_body and self.linger_deadline is None:
            self._close_lingering()

    def _close_lingering(self) -> None:
        """Close after an answer without losing it. Closing a socket with input unread makes the
        kernel send a reset, and a reset can destroy the answer before the client has read it (a
        client still sending its request reads only after): so shut down the write side (the
        client sees the end of the response; TLS cannot, its close_notify comes with the close),
        read and drop whatever still arrives, and close once the client closes or a bound is hit
        (nginx's lingering close)."""
        if self.linger_deadline is not None:
            return
        self.closing = True
        if self.cycle is not None:
            self.cycle.keep_alive = False  # a parser adapter in mid-read stops at the next request
        self._stop_parsing()
        transport = self.transport
        timeout = self.config.timeout_linger
        if self.eof or timeout <= 0 or transport.is_closing():
            self.writer.close()
            return
        self.writer.release()
        if transport.can_write_eof():
            transport.write_eof()
        self.flow.resume_reading(BODY | BACKLOG | PARSER)  # whatever paused it: input is only dropped now
        self.parser.left = LINGER_BYTES  # a budget of its own (reading may have paused on the first)
        self.linger_seen = LINGER_BYTES
        now = self.loop.time()
        self.linger_deadline = now + timeout
        self.linger_timer = self.loop.call_at(min(now + LINGER_IDLE, self.linger_deadline), self._linger_check)

    def _linger_check(self) -> None:
        now = self.loop.time()
        left = self.parser.left
        deadline = self.linger_deadline
        assert deadline is not None  # (set with the timer that calls this)
        if now >= deadline or left == self.linger_seen:  # out of time, or a silent client
            self.linger_timer = None
            self._end_linger()
            return
        self.linger_seen = left
        self.linger_timer = self.loop.call_at(min(now + LINGER_IDLE, deadline), self._linger_check)

    def _end_linger(self) -> None:
        if self.transport.get_write_buffer_size():
            self.writer.abort()  # the answer is still not read: the client is not reading at all
        else:
            self.writer.close()

    def input_discarded(self) -> None:
        """The input dropped since the last request was parsed went over LINGER_BYTES."""
        if self.linger_deadline is not None:
            self._end_linger()
        else:
            self.flow.pause_reading()  # answers are still on their way: _close_lingering resumes

    # -- keep-alive and shutdown ----------------------------------------------------------------
    def _become_idle(self) -> None:
        self.idle_since = self.loop.time()  # the server's sweep closes it once idle too long

    def _watch_head(self) -> None:
        # A request head is arriving in pieces (the common one-read head never gets here): all of
        # it must arrive within --timeout-request-header, however slowly it trickles (slowloris).
        self.head_deadline = self.loop.time() + self.config.timeout_request_header
        if self.head_timer is None:
            self.head_timer = self.loop.call_at(self.head_deadline, self._head_timer_fired)

    def _head_timer_fired(self) -> None:
        self.head_timer = None
        deadline = self.head_deadline
        if deadline is None or self.transport.is_closing():
            return
        if self.loop.time() < deadline:
            self.head_timer = self.loop.call_at(deadline, self._head_timer_fired)
            return
        self.head_deadline = None
        self.refuse(BadRequest(408, "Request header timeout"))

    def body_stalled(self, cycle: H1Cycle) -> None:
        """The app waited --timeout-request-body for body bytes that did not come."""
        if cycle is self.cycle and cycle.more_body and not self.transport.is_closing():
            self.refuse(BadRequest(408, "Request body timeout"))

    def shutdown(self) -> None:
        """Server is stopping: close once idle and quiet, answering what comes meanwhile with
        "connection: close"; a connection under way closes after its response."""
        self.closing = True
        active = self.active
        if active is not None and active.head_sent and not active.more_body:
            active.wake()  # a streaming response's app waiting in receive() hears http.disconnect
        if self.active is None and not self.pipeline:
            if self.cycle is None:
                # Accepted just before the stop, first request maybe still in flight (a worker
                # rolled over by its supervisor): serve it with "connection: close" if it comes.
                self.loop.call_later(FIRST_REQUEST_GRACE, self._close_if_idle)
            else:
                self.loop.call_later(SHUTDOWN_QUIET, self._close_when_quiet)
            return
        for cycle in (self.active, *self.pipeline):
            if cycle is not None and not cycle.head_sent:
                cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        if self.active is None and not self.pipeline:
            self.writer.close()

    def _close_when_quiet(self) -> None:
        """Shutdown of an idle keep-alive connection: close once nothing came for SHUTDOWN_QUIET
        (since the shutdown began, the first time this runs, and since the last response)."""
        if self.active is not None or self.pipeline or self.transport.is_closing():
            return  # a request came: the connection closes after its response
        now = self.loop.time()
        since = self.idle_since  # None while a request is arriving
        if since is not None and now >= since + SHUTDOWN_QUIET:
            self.writer.close()
        else:
            self.loop.call_at((since or now) + SHUTDOWN_QUIET, self._close_when_quiet)

    def _write_timed_out(self) -> None:
        """--timeout-write: the client has read nothing of what we send for that long. Nothing more
        can reach it, so drop the connection: the app's pending send() raises ClientDisconnected."""
        active = self.active
        if active is not None:
            target = active.raw_path[:100].decode("ascii", "backslashreplace")  # (bytes from the client)
            doing = f"the response to {active.method} {target} was being sent"
        else:
            doing = "its last response was waiting to be read"
        logger.info(
            "Aborted the connection from %s: it read nothing for %gs while %s (--timeout-write)",
            peer_name(self.client), self.config.timeout_write, doing,
        )
        self.writer.abort()

    def abort(self) -> None:
        """Graceful shutdown timed out: cancel the app and drop the connection."""
        if self.active is not None and self.active.task is not None:
            self.active.task.cancel()
        self.writer.abort()


class _InContext:
    """Awaitable: the rest of an app coroutine whose first step ran already (yielding ``first``),
    each further step inside the request's context (``run``: its Context.run)."""

    __slots__ = ("coro", "run", "first")

    def __init__(self, coro: Any, run: Any, first: Any) -> None:
        self.coro = coro
        self.run = run
        self.first = first

    def __await__(self) -> Any:
        return self

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        first = self.first
        if first is not _TAKEN:
            self.first = _TAKEN
            return first
        return self.run(self.coro.send, None)

    def send(self, value: Any) -> Any:
        return self.run(self.coro.send, value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        return self.run(self.coro.throw, typ if val is None else val)

    def close(self) -> None:
        self.run(self.coro.close)


_TAKEN = object()
_NOT_STARTED = object()


class H1Cycle(RequestResponseCycle):
    """The ASGI cycle of an HTTP/1.1 request, with its keep-alive (see semantics.H1Head): set from
    the request head, turned off by the writer (the app's Connection: close, an HTTP/1.0 body
    that ends with the connection, a failed response, a body left unread) and by the connection
    (shutdown, a lingering close). The shared cycle never reads it."""

    __slots__ = ("keep_alive",)
    keep_alive: bool


class H2cBody(H1Cycle):
    """Stands in for the request cycle while h11 parses the body of an h2c upgrade request (at
    most H2C_BODY_LIMIT bytes, nothing queued ahead of it): the bytes go to HTTP/2 stream 1.
    A cycle itself (the connection's ``cycle`` holds it), of which it sets what the connection
    reads of the cycle it fills; the compiled build checks that ``cycle`` holds an H1Cycle."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.more_body = True
        self.waiter = None
        self.body_left = 0
        self.keep_alive = True
        self.disconnected = False
        self.response_complete = True  # a refusal meanwhile closes the connection (see refuse())

    def on_body(self, data: bytes) -> None:
        self.parts.append(data)

    def on_disconnect(self) -> None:
        pass


class DiscardInput:
    """Stands in for the parser adapter once the connection reads no further request (after a
    refusal, or on the way to a lingering close): input is counted and dropped, never parsed."""

    __slots__ = ("conn", "replaced", "left")

    in_head = False
    holds_input = False
    wants_response_complete = False

    def __init__(self, conn: HTTPProtocol, replaced: Any) -> None:
        self.conn = conn
        # The adapter it replaces may be in the middle of a callback now: closed with the connection.
        self.replaced = replaced
        self.left = LINGER_BYTES

    def feed(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0:
            self.conn.input_discarded()

    def response_complete(self) -> None:
        pass

    def close(self) -> None:
        self.replaced.close()
        self.conn = None


def _start_sweep(state: ServerState, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
    interval = max(min(timeout / 4, SWEEP_INTERVAL), SWEEP_INTERVAL_MIN)
    state.idle_sweep = loop.call_later(interval, _sweep_idle, state, loop, timeout, interval)


def _sweep_idle(state: ServerState, loop: asyncio.AbstractEventLoop, timeout: float, interval: float) -> None:
    """Close the HTTP/1.1 connections idle (no request under way or arriving) for --timeout-keep-alive
    or longer; again after interval while any is open (the next connection_made starts it again)."""
    state.idle_sweep = None
    oldest = loop.time() - timeout
    idle = []
    watched = 0
    for conn in state.connections:  # (WebSocket sessions and HTTP/2 connections time out their own way)
        if isinstance(conn, HTTPProtocol):
            watched += 1
            since = conn.idle_since
            if since is not None and since <= oldest and conn.active is None and not conn.pipeline:
                idle.append(conn)
    for conn in idle:  # (closing calls back into the registry later, never during the loop above)
        conn.writer.close()
    if watched > len(idle):
        state.idle_sweep = loop.call_later(interval, _sweep_idle, state, loop, timeout, interval)


def _after_heads(data: bytes, count: int) -> int:
    """Where the count-th request head (CRLF CRLF) in data ends; len(data) if it holds fewer.
    (A body holding CRLF CRLF only makes a turn's share smaller.)"""
    end = 0
    find = data.find
    for _ in range(count):
        end = find(b"\r\n\r\n", end)
        if end < 0:
            return len(data)
        end += 4
    return end
