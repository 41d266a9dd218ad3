"""One WebSocket connection: the websockets sans-I/O ``ServerProtocol``, fed with bytes.

The session is a plain object: its carrier (see carrier.py; over HTTP/1.1 the upgraded transport,
upgraded.py; over HTTP/2 a stream, RFC 8441) feeds it what the client sends (``feed``, ``feed_eof``,
``lost``) and writes what it decides. The app runs as an HTTP app does (asgi/app_runner.py: its
Task, one failure taxonomy). Bytes go into ``ServerProtocol``, frames come out as ASGI ``websocket.*`` messages, and the
app's messages go back out as frames, through the carrier.

Phases, as the app sees them::

    HANDSHAKE --accept--> OPEN --close / error / disconnect--> CLOSED
        |--close--> 403, exception--> 500, http.response.start--> DENIAL --last body--> CLOSED

Reading from the client pauses for as long as any of a few reasons holds (the reasons of its
FlowControl: the app is behind, the client does not read what we write, frames are waiting to be
parsed, the app has not accepted yet), and at most FRAME_BUDGET frames are parsed per turn of the event loop: a client gets a
bounded share of memory and of the loop's time.

The carrier is ended when websockets says so (SEND_EOF), or aborted by a timer when the peer does not
finish the closing handshake. The session leaves the server's registry once both the connection
and the app task are over, so graceful shutdown also waits for the app's disconnect handling.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import struct
import zlib
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any

from websockets.exceptions import InvalidState, ProtocolError
from websockets.frames import CloseCode, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

from ..asgi.app_runner import CANCELLED, DISCONNECTED, failure_kind, log_failure, new_task, run_app
from ..asgi.errors import ClientDisconnected
from ..asgi.flow import (
    BACKLOG,
    NOT_ACCEPTED,
    PARSING,
    QUEUE_FULL,
    WRITES_BLOCKED,
    FlowControl,
    wake,
)
from ..asgi.scope import peer_name
from .deflate import MessageDeflate, TooBig
from .handshake import (
    Accept,
    DenialResponse,
    HandshakeRecord,
    Refusal,
    build_scope,
    check_extended_connect,
    check_handshake,
    complete_accept,
)
from .websockets_compat import open_protocol, release, set_message_size

if TYPE_CHECKING:
    from .carrier import HandshakeRequest, UpgradedConnection, WebSocketCarrier

logger = logging.getLogger("fastserve.error")
Buffer = bytes | bytearray | memoryview  # what frames are read from
# Close codes that mean the server failed the connection; they outrank the client's close frame.
_FAILURE_CODES = frozenset((
    CloseCode.PROTOCOL_ERROR, CloseCode.UNSUPPORTED_DATA, CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG,
    CloseCode.MANDATORY_EXTENSION, CloseCode.INTERNAL_ERROR, CloseCode.SERVICE_RESTART, CloseCode.TRY_AGAIN_LATER,
))

HANDSHAKE, OPEN, DENIAL, CLOSED = "handshake", "open", "denial", "closed"
# How long a peer gets to answer our close frame (or read our last bytes) before the TCP
# connection is aborted; the same default as the websockets library's close_timeout.
CLOSE_TIMEOUT = 10.0
_TEXT, _BINARY, _CONT, _PONG, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG, Opcode.CLOSE
_WS_OPEN = State.OPEN
_FIN_TEXT, _FIN_BINARY = 0x81, 0x82  # first header byte: FIN, no RSV bits, opcode
_START_TEXT, _START_BINARY, _CONT_MORE, _CONT_LAST = 0x01, 0x02, 0x00, 0x80  # fragments, no RSV bits
_RSV1 = 0x40  # "compressed" on a message's first frame, with permessage-deflate (RFC 7692 6)
_COMPRESSED_STARTS = frozenset(first | _RSV1 for first in (_FIN_TEXT, _FIN_BINARY, _START_TEXT, _START_BINARY))
_HEAD_SHORT, _HEAD_16, _HEAD_64 = struct.Struct("!BB").pack, struct.Struct("!BBH").pack, struct.Struct("!BBQ").pack
_NO_MASK = b"\0\0\0\0"  # a valid masking key that leaves the payload as it is
_utf8_decoder = codecs.getincrementaldecoder("utf-8")

# Why reading from the client is paused: the reasons of the session's FlowControl (asgi/flow.py:
# QUEUE_FULL, WRITES_BLOCKED, BACKLOG, NOT_ACCEPTED, PARSING). The carrier reads again only once
# no reason is left, so the end of one cannot undo another; a BACKLOG is parsed once it is the
# only reason left.
# Frames parsed per turn of the event loop; the rest waits for the next turn, so that one client
# sending a flood of tiny frames cannot hold up everyone else.
FRAME_BUDGET = 256


class SessionSettings:
    """Per-server constants, computed once from the config."""

    __slots__ = (
        "extensions", "deflate_threshold", "deflate_level", "max_size", "max_queue", "max_queue_size", "ping_interval", "ping_timeout",
        "handshake_timeout", "write_timeout",
    )

    def __init__(self, config: Any) -> None:
        if config.ws_per_message_deflate:
            from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

            # websockets' defaults (its "Compression" guide: window bits 12, memory level 5), at
            # --ws-deflate-level: compressing is most of the CPU a compressed message costs.
            self.extensions = [ServerPerMessageDeflateFactory(
                server_max_window_bits=12, client_max_window_bits=12,
                compress_settings={"memLevel": 5, "level": config.ws_deflate_level},
            )]
        else:
            self.extensions = None
        self.deflate_threshold = config.ws_deflate_threshold
        self.deflate_level = config.ws_deflate_level
        self.max_size = config.ws_max_size
        self.max_queue = config.ws_max_queue
        self.max_queue_size = config.ws_max_queue_size
        self.ping_interval = config.ws_ping_interval or None
        self.ping_timeout = config.ws_ping_timeout or None
        self.handshake_timeout = config.timeout_ws_handshake
        self.write_timeout = config.timeout_write


# The server's own refusals of a handshake: status, text, extra headers.
_Refusal = tuple[int, str, list[tuple[bytes, bytes]]]
_FORBIDDEN: _Refusal = (403, "Forbidden", [])
_INTERNAL_ERROR: _Refusal = (500, "Internal Server Error", [])
_UNAVAILABLE: _Refusal = (503, "Service Unavailable", [(b"retry-after", b"1")])


class WebSocketSession:
    is_websocket = True  # what the server registry counts as a WebSocket (metrics)
    __slots__ = (
        "carrier",
        "loop",
        "app",
        "state",
        "settings",
        "scope",
        "client",
        "protocol",
        "accepted",
        "accept_status",
        "phase",
        "flow",
        "shared_flow",
        "inbox",
        "queued_size",
        "continue_handle",
        "waiter",
        "disconnect",
        "early",
        "parts",
        "own_fragments",
        "inflating",
        "deflate",
        "direct",
        "buffered",
        "needed",
        "decoder",
        "task",
        "app_started",
        "connection_lost_",
        "denial",
        "ping_payload",
        "ping_handle",
        "pong_handle",
        "close_handle",
        "start_time",
        "reported",
        "handshake_handle",
        "context",
    )

    def __init__(
        self, conn: UpgradedConnection, request: HandshakeRequest, settings: SessionSettings, carrier: WebSocketCarrier
    ) -> None:
        self.carrier = carrier
        self.loop = conn.loop
        self.app = conn.app
        self.state = conn.state
        self.context = conn.context  # the connection's, never entered by an app: see new_task
        self.settings = settings
        self.scope = build_scope(request, conn)
        self.client = request.client
        # websockets' protocol, started OPEN once the app accepts: None until then.
        self.protocol: ServerProtocol = None  # type: ignore[assignment]  # (checked where it can be None)
        self.accepted: Accept | None = None  # the handshake's answer, completed when the app accepts
        self.accept_status = 101  # what the accept is, for the access log (HTTP/2: 200)
        self.phase = HANDSHAKE
        # (the carrier pauses and resumes reading, and reports what it holds unsent, as a transport does)
        self.flow = FlowControl(carrier, settings.write_timeout, self._write_timed_out)  # type: ignore[arg-type]
        # HTTP/2: the connection's FlowControl, whose write pause (the transport's buffer is full)
        # holds send() too, as it holds every stream's; its own --timeout-write watches it.
        self.shared_flow: FlowControl | None = getattr(carrier, "connection_flow", None)
        if self.shared_flow is None and conn.flow.write_paused:  # the client stopped reading before the hand-over
            self.flow.pause_writing()
        self.inbox: deque[dict[str, Any]] = deque()
        self.queued_size = 0  # of the messages in the inbox (see _size)
        self.continue_handle: asyncio.Handle | None = None  # parses the backlog on the next turn
        self.waiter: asyncio.Future | None = None
        self.disconnect: dict[str, Any] | None = None  # repeated to the app once the inbox is empty
        self.early = bytearray()  # bytes received before the accept went out
        self.parts: bytearray | None = None  # fragments of the message being received, joined
        self.own_fragments = False  # whether _read_frames took its first fragment (see _is_direct)
        self.inflating = False  # whether that fragmented message is compressed
        self.deflate: MessageDeflate | None = None  # permessage-deflate, once agreed and accepted
        # Framing done here, ahead of websockets' parser (see _read_frames); set at accept.
        self.direct = False
        self.buffered = bytearray()  # the start of an incomplete frame, or the backlog, in direct mode
        self.needed = 0  # bytes the buffered frame needs in all, once its header is known
        self.decoder = None
        self.task: asyncio.Task | None = None
        self.app_started = False
        self.connection_lost_ = False
        self.denial: DenialResponse | None = None
        self.ping_payload: bytes | None = None
        self.ping_handle: asyncio.TimerHandle | None = None
        self.pong_handle: asyncio.TimerHandle | None = None
        self.close_handle: asyncio.TimerHandle | None = None
        self.start_time = perf_counter()  # as the HTTP cycle: microsecond resolution for the access log
        self.reported = False
        self.handshake_handle: asyncio.TimerHandle | None = None

    # -- taking over the connection -------------------------------------------------------------
    def start(self, request: HandshakeRequest, leftover: bytes) -> None:
        """HTTP/1.1: check the upgrade request and start the app; ``leftover``: bytes read after
        the request head."""
        self._start(check_handshake(request, self.settings.extensions), leftover)

    def start_extended_connect(self, request: HandshakeRequest, protocol: str | None) -> None:
        """HTTP/2 (RFC 8441): check the extended CONNECT (``protocol``: its ``:protocol``) and
        start the app; the stream's DATA then comes through feed(). See carrier.py."""
        self.accept_status = 200
        self._start(check_extended_connect(request, protocol, self.settings.extensions), b"")

    def _start(self, decision: Accept | Refusal, leftover: bytes) -> None:
        if self.flow.write_paused:
            self._pause(WRITES_BLOCKED)
        if not self._check_handshake(decision):
            return
        if self.state.shutting_down:
            # A handshake that arrives once the server is stopping gets its 503 without the app
            # (on 3.12+ the app's first step, which runs right here, could accept it first).
            self._refuse(*_UNAVAILABLE)
            return
        self.inbox.append({"type": "websocket.connect"})
        # The timer first: on Python 3.12+ the app's first step runs inside new_task() (eager
        # start, as for HTTP), and may answer the handshake there, which cancels the timer.
        self.handshake_handle = self.loop.call_later(self.settings.handshake_timeout, self._handshake_timed_out)
        task = new_task(run_app(self, self.app), self.loop, self.context)
        if not task.done():
            self.task = task
        # Counts for --limit-connections too; registered once started, since a server shutting
        # down calls shutdown() from here (a 503 to the handshake). Not if the app's first step
        # (eager on 3.12+) already saw the whole session through: nothing would unregister it.
        if self.task is not None or not self.connection_lost_:
            self.state.connection_opened(self)
        if leftover:
            self.feed(leftover)

    def _check_handshake(self, decision: Accept | Refusal) -> bool:
        """The handshake is checked before the app sees it: 400 or 426 for a malformed one."""
        if isinstance(decision, Refusal):
            logger.info("Refused a WebSocket handshake from %s: %s", peer_name(self.client), decision.exc)
            self._refuse(decision.status, decision.reason, decision.headers)
            return False
        self.accepted = decision
        return True

    # -- what the carrier reports ---------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Bytes from the client."""
        if self.direct:
            if self.flow.read_paused:  # bytes that were on their way when reading paused: after the backlog
                self.buffered += data
                self.needed = 0
                self._pause(BACKLOG)
            elif self._read_frames(data):  # only bytes websockets parsed can leave it something to do
                self._after_receive()
            return
        protocol = self.protocol
        if protocol is None:  # not accepted (yet)
            if self.phase is HANDSHAKE:
                # A client may not send frames before the accept, but keep what arrives for then.
                self.early += data
                if len(self.early) >= self.settings.max_queue_size:
                    self._pause(NOT_ACCEPTED)
            return
        self._feed(data)
        self._after_receive()

    def _feed(self, data: Buffer) -> None:
        """Let websockets parse ``data``: control frames, fragments, compression, bad input."""
        protocol = self.protocol
        protocol.receive_data(data)  # type: ignore[arg-type]  # a memoryview works: it is appended to a bytearray
        events = protocol.events_received()
        if events:
            for frame in events:
                self._on_frame(frame)

    def feed_eof(self) -> None:
        """The client will send no more (the carrier then ends its side)."""
        if self.protocol is not None:
            if self.buffered and self.direct:  # a backlog (its frames parsed now, all of them)...
                data, self.buffered = bytes(self.buffered), bytearray()
                self._read_frames(data, hold=False)
            if self.buffered:  # ...or a frame cut short (websockets reports it as such)
                data, self.buffered = bytes(self.buffered), bytearray()
                self._feed(data)
            self.protocol.receive_eof()
            self._after_receive()

    def _after_receive(self) -> None:
        self._flush()
        if self.protocol.parser_exc is not None and not self.reported:
            self._report_failure()

    def lost(self, exc: Exception | None) -> None:
        """The connection is gone (closed by either side, or broken)."""
        self.connection_lost_ = True
        for handle in (self.ping_handle, self.pong_handle, self.close_handle, self.handshake_handle):
            if handle is not None:
                handle.cancel()
        if self.continue_handle is not None:
            self.continue_handle.cancel()
        self.flow.connection_lost()
        self.phase = CLOSED
        self._end_receiving(*self._close_code())
        if self.protocol is not None:
            release(self.protocol)  # frees the connection at once, see release()
        if self.task is None:
            self.state.connection_closed(self)

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        # A client that does not read what it asks for (pongs to a ping flood) is not read either.
        self._pause(WRITES_BLOCKED)

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        self._unpause(WRITES_BLOCKED)

    # -- pausing reading (the session's FlowControl) -------------------------------------------
    def _pause(self, reason: int) -> None:
        if not self.connection_lost_:  # (the carrier is not called after the end)
            self.flow.pause_reading(reason)

    def _unpause(self, reason: int) -> None:
        flow = self.flow
        if flow.read_paused & reason and not self.connection_lost_:
            flow.resume_reading(reason)
            self._continue_backlog()

    def _continue_backlog(self) -> None:
        """A backlog that nothing else holds back is parsed on the next turn (reading stays paused
        until then: its frames come before anything the client sends next)."""
        if self.flow.read_paused == BACKLOG and self.continue_handle is None:
            self.continue_handle = self.loop.call_soon(self._continue_reading)

    def _hold_backlog(self, data: Buffer) -> None:
        """Keep ``data`` (from a frame boundary on) for later: the frame budget is spent, the queue
        is full or writes are blocked. Reading stays paused until it is parsed."""
        self.buffered = bytearray(data)
        self.needed = 0
        self._pause(BACKLOG)
        self._continue_backlog()

    def _continue_reading(self) -> None:
        self.continue_handle = None
        flow = self.flow
        if flow.read_paused != BACKLOG or self.connection_lost_:
            return  # still held back: continued when that ends
        data, self.buffered = bytes(self.buffered), bytearray()
        flow.pause_reading(PARSING)  # the carrier stays paused while this runs...
        flow.resume_reading(BACKLOG)  # ...which may hold a new backlog (_hold_backlog)
        if self._read_frames(data):
            self._after_receive()
        self._unpause(PARSING)

    # -- frames from the client -----------------------------------------------------------------
    def _read_frames(self, data: bytes, hold: bool = True) -> bool:
        """Split ``data`` into frames; complete, masked text and binary frames without RSV bits, and
        their continuations, become messages here (see _is_direct), every other frame goes to
        websockets whole, one at a time. Returns whether websockets was given any bytes.

        websockets' parser thus only ever sees whole frames and stays at a frame boundary, so this
        can go on after a ping or a fragmented message, and stop at any frame: after FRAME_BUDGET
        frames, or when the queue fills or writes block, the rest is held (_hold_backlog), unless
        not ``hold`` (at the client's EOF). With permessage-deflate, compressed messages are
        inflated here too (websockets runs without extensions); other frames with RSV bits go to
        websockets, which refuses them. Used from the accept until websockets stops parsing (it
        has sent EOF: closed or failed).
        """
        buffered = self.buffered
        if not buffered and self._one_small_message(data):
            return False
        if buffered:
            buffered += data
            if len(buffered) < self.needed:
                return False  # still incomplete: no need to parse its header again
            # Parsed in place: a large frame (up to --ws-max-size) is not copied once more.
            data, self.buffered = memoryview(buffered), bytearray()
        protocol = self.protocol
        flow = self.flow
        max_size = self.settings.max_size
        end = len(data)
        pos = 0
        budget = FRAME_BUDGET
        self.needed = 0  # until a frame's header is complete
        fed = False
        while pos < end:
            if protocol.eof_sent:  # failed (_fail) or closed: websockets discards the rest
                self.direct = False
                self._feed(data[pos:])
                return True
            if hold and (not budget or flow.read_paused & (QUEUE_FULL | WRITES_BLOCKED)):
                self._hold_backlog(data[pos:])
                return fed
            head = pos + 2
            if head > end:
                break
            first, second = data[pos], data[pos + 1]
            length = second & 0x7F
            if length == 126:
                if head + 2 > end:
                    break
                length = int.from_bytes(data[head : head + 2], "big")
                head += 2
            elif length == 127:
                if head + 8 > end:
                    break
                length = int.from_bytes(data[head : head + 8], "big")
                head += 8
            if length > max_size:  # websockets fails the connection (1009) with its own message
                self.direct = False
                self._feed(data[pos:])
                return True
            masked = second & 0x80
            if masked:
                head += 4
            frame_end = head + length
            if frame_end > end:
                self.needed = frame_end - pos
                break
            budget -= 1
            if masked and self.phase is OPEN and self._is_direct(first, length):
                payload = data[head:frame_end]
                mask = data[head - 4 : head]
                payload = bytes(payload) if mask == _NO_MASK else apply_mask(payload, mask)
                if first == _FIN_TEXT or first == _FIN_BINARY:
                    self._on_message(first == _FIN_TEXT, payload)
                else:
                    self._on_direct_fragment(first, payload)
            elif (masked and self.inflating and first & 0x4F == _RSV1 and self.phase is OPEN
                  and protocol.current_size + length <= max_size):
                # A continuation of a compressed message marked compressed itself (RFC 7692 6.1).
                self._fail_message(CloseCode.PROTOCOL_ERROR, "RSV1 bit set in continuation frame")
            else:  # also a text or binary frame after the app closed: websockets drops it
                if first in _COMPRESSED_STARTS and self.deflate is not None:
                    # Not a message here (the app closed, or it breaks a rule websockets reports):
                    # websockets, which runs without extensions, sees it as the uncompressed frame
                    # it stands for (to drop it, or to report the fault it has). Open, it is
                    # inflated first, as websockets' extension would: a bomb is still a 1009.
                    if masked and self.phase is OPEN:
                        payload = data[head:frame_end]
                        mask = data[head - 4 : head]
                        payload = bytes(payload) if mask == _NO_MASK else apply_mask(payload, mask)
                        self._inflate(payload, first & 0x80 != 0, protocol.current_size or 0, True)
                    self._feed(bytes((first ^ _RSV1,)) + bytes(data[pos + 1 : frame_end]))
                else:
                    self._feed(data[pos:frame_end])
                fed = True
                if protocol.eof_sent:  # a close frame or a failure: no more direct framing
                    self.direct = False
                    if frame_end < end:
                        self._feed(data[frame_end:])
                    return True
            pos = frame_end
        if pos < end:
            self.buffered = bytearray(data[pos:])
        return fed

    def _is_direct(self, first: int, length: int) -> bool:
        """Whether _read_frames handles this (masked, complete) frame itself: a text or binary
        frame (compressed too, with permessage-deflate), or a continuation of a message begun that
        way, within --ws-max-size.
        Anything else goes to websockets, which keeps the rules (and the error messages)."""
        current = self.protocol.current_size
        if current is None:
            return (first == _FIN_TEXT or first == _FIN_BINARY or first == _START_TEXT or first == _START_BINARY
                    or (first in _COMPRESSED_STARTS and self.deflate is not None))
        if first != _CONT_MORE and first != _CONT_LAST:
            return False
        return self.own_fragments and current + length <= self.settings.max_size

    def _on_direct_fragment(self, first: int, data: bytes) -> None:
        """A fragment, or a compressed message, _read_frames took itself. For fragments,
        websockets' count of the message so far (inflated) is kept up to date, as it checks what
        may come next (and the size limit) against it."""
        protocol = self.protocol
        fin = first & 0x80 != 0
        opcode = first & 0x0F  # TEXT or BINARY on a message's first frame, CONT after it
        before = 0 if opcode else protocol.current_size
        if (first & _RSV1 if opcode else self.inflating):
            inflated = self._inflate(data, fin, before, opcode == 0)
            if inflated is None:
                return  # failed: too big, or not deflate data
            data = inflated
            if opcode and fin:  # a whole compressed message in one frame
                self._on_message(opcode == _TEXT, data)
                return
        if opcode:
            set_message_size(protocol, len(data))
            self.decoder = _utf8_decoder() if opcode == _TEXT else None
            self.parts = bytearray()
            self.own_fragments = True
            self.inflating = first & _RSV1 != 0
        elif fin:
            set_message_size(protocol, None)
            self.inflating = False
        else:
            set_message_size(protocol, before + len(data))
        self._on_fragment(data, fin)

    def _inflate(self, data: bytes, fin: bool, before: int, continued: bool) -> bytes | None:
        """A compressed frame's payload, inflated; None once the connection is failed for it
        (close reasons as websockets words them)."""
        limit = self.settings.max_size - before
        try:
            return self.deflate.inflate(data, fin, limit)  # type: ignore[union-attr]  # set: compressed frames are taken only then
        except TooBig:
            if continued:
                reason = f"frame after reading {before} bytes exceeds limit of {self.settings.max_size} bytes"
            else:
                reason = f"frame exceeds limit of {limit} bytes"
            self._fail_message(CloseCode.MESSAGE_TOO_BIG, reason)
        except zlib.error:
            self._fail_message(CloseCode.PROTOCOL_ERROR, "decompression failed")
        return None

    def _fail_message(self, code: int, reason: str) -> None:
        """The message being received breaks the rules: drop it and fail the connection."""
        self.parts = None
        self.inflating = False
        self._fail(code, reason)

    def _on_frame(self, frame: Any) -> None:
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if frame.fin:
                self._on_message(opcode is _TEXT, frame.data)
            else:
                self.decoder = _utf8_decoder() if opcode is _TEXT else None
                self.parts = bytearray()
                self.own_fragments = False  # compressed: its continuations go to websockets too
                self._on_fragment(frame.data, False)
        elif opcode is _CONT:
            self._on_fragment(frame.data, frame.fin)
        elif opcode is _PONG:
            if frame.data == self.ping_payload:
                self._on_pong()
        elif opcode is _CLOSE:
            close = self.protocol.close_rcvd
            self._end_receiving(close.code, close.reason)
        # PING: ServerProtocol has already queued the pong.

    def _one_small_message(self, data: bytes) -> bool:
        """The usual read, handled in one go: exactly one masked FIN text/binary frame under 126
        bytes (2 header bytes, 4 mask bytes, payload), no fragmented message in progress."""
        size = len(data) - 6
        if not 0 <= size < 126 or data[1] != 0x80 | size or size > self.settings.max_size:
            return False
        first = data[0]
        if (first != _FIN_TEXT and first != _FIN_BINARY) or self.phase is not OPEN or self.protocol.current_size is not None:
            return False
        mask = data[2:6]
        payload = data[6:] if mask == _NO_MASK else apply_mask(data[6:], mask)
        # _on_message(), inlined for the common case; it still reports invalid UTF-8.
        if first == _FIN_TEXT:
            try:
                message = {"type": "websocket.receive", "text": payload.decode()}
            except UnicodeDecodeError:
                self._on_message(True, payload)
                return True
        else:
            message = {"type": "websocket.receive", "bytes": payload}
        self._queue(message)
        return True

    def _on_message(self, is_text: bool, data: bytes) -> None:
        if is_text:
            try:
                text = data.decode()
            except UnicodeDecodeError as exc:
                self._fail(CloseCode.INVALID_DATA, f"invalid UTF-8 at position {exc.start}")
                return
            self._queue({"type": "websocket.receive", "text": text})
        else:
            self._queue({"type": "websocket.receive", "bytes": data if type(data) is bytes else bytes(data)})

    def _on_fragment(self, data: bytes, fin: bool) -> None:
        parts, decoder = self.parts, self.decoder
        if parts is None:
            return  # dropped after a failure; the connection is closing
        if decoder is not None:
            # Checked as it arrives, so invalid UTF-8 fails the connection without waiting for the end.
            try:
                decoder.decode(data, fin)
            except UnicodeDecodeError as exc:
                self.parts = None
                self._fail(CloseCode.INVALID_DATA, f"invalid UTF-8: {exc.reason}")
                return
        # Joined as they arrive: a million 1-byte fragments take a million bytes, not a million objects
        # (and websockets keeps their total within --ws-max-size).
        parts += data
        if fin:
            self.parts = None
            if decoder is not None:
                self._queue({"type": "websocket.receive", "text": parts.decode()})
            else:
                self._queue({"type": "websocket.receive", "bytes": bytes(parts)})

    def _queue(self, message: dict[str, Any]) -> None:
        if self.phase is CLOSED or self.task is None:
            return  # closing (by the app, the server or a failure), or the app is gone
        inbox = self.inbox
        inbox.append(message)
        self.queued_size += _size(message)
        if self._queue_full():  # after taking it: one message is always taken (up to --ws-max-size)
            self._pause(QUEUE_FULL)  # until the app catches up, in receive()
        waiter = self.waiter  # _wake(), inlined: this runs once per message
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _end_receiving(self, code: int, reason: str) -> None:
        """No more messages from this client: the app's next receive() after the queue is empty
        returns websocket.disconnect."""
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:  # checked here: this runs once per request, usually with no waiter
            self.waiter = None
            wake(waiter)

    def _close_code(self) -> tuple[int, str]:
        """Why the connection ended: an error close the server sent (the server failed it), else
        the client's close, else ours, else 1006."""
        protocol = self.protocol
        if protocol is None:  # never accepted
            return CloseCode.ABNORMAL_CLOSURE, ""
        sent = protocol.close_sent
        if sent is not None and sent.code in _FAILURE_CODES:
            close = sent
        else:
            close = protocol.close_rcvd or sent
        if close is None:
            return CloseCode.ABNORMAL_CLOSURE, ""
        return close.code, close.reason

    # -- ASGI receive ---------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        inbox = self.inbox
        if not inbox:
            if self.disconnect is not None:
                return self.disconnect
            self.waiter = self.loop.create_future()
            await self.waiter
            if not inbox:
                return self.disconnect
        message = inbox.popleft()
        self.queued_size -= _size(message)
        if self.flow.read_paused & QUEUE_FULL and not self._queue_full():
            self._unpause(QUEUE_FULL)
        return message

    def _queue_full(self) -> bool:
        settings = self.settings
        return len(self.inbox) >= settings.max_queue or self.queued_size > settings.max_queue_size

    # -- ASGI send ------------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        shared = self.shared_flow
        if self.flow.write_paused or (shared is not None and shared.write_paused):
            await self._writable()
        kind = message["type"]
        phase = self.phase
        if phase is OPEN:
            if kind == "websocket.send":
                self._send_data(message)
            elif kind == "websocket.close":
                self._send_close(message)
            else:
                raise RuntimeError(f"Expected 'websocket.send' or 'websocket.close', got {kind!r}.")
        elif phase is HANDSHAKE:
            self._answer_handshake(kind, message)
        elif phase is DENIAL:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"Expected 'websocket.http.response.body', got {kind!r}.")
            self._send_denial_body(message)
        else:
            raise ClientDisconnected(f"Cannot send {kind!r}: the WebSocket connection is closed.")

    def _send_data(self, message: dict[str, Any]) -> None:
        protocol = self.protocol
        if protocol.state is not _WS_OPEN:
            raise ClientDisconnected("Cannot send 'websocket.send': the WebSocket connection is closing.")
        text = message.get("text")
        if text is not None:
            if message.get("bytes") is not None:
                raise RuntimeError("'websocket.send' needs 'text' or 'bytes', not both.")
            data, first = text.encode(), _FIN_TEXT
        else:
            data, first = message.get("bytes"), _FIN_BINARY
            if data is None:
                raise RuntimeError("'websocket.send' needs 'text' or 'bytes'.")
        deflate = self.deflate
        if deflate is not None and len(data) >= self.settings.deflate_threshold:
            # Compressed (RSV1) when permessage-deflate was agreed and it is worth it; a smaller
            # message goes out as it is: RFC 7692 lets a sender choose per message, and the
            # compression context only holds what was compressed.
            data, first = deflate.compress(data), first | _RSV1
        # An unmasked, unfragmented frame is a header and the payload; built here, it skips
        # websockets' Frame object, serializer and write list (every write is flushed, so
        # nothing queued in websockets can be overtaken).
        length = len(data)
        head = _HEAD_SHORT(first, length) if length < 126 else _frame_head(first, length)
        self.carrier.write(head + data)

    def _send_close(self, message: dict[str, Any]) -> None:
        code = message.get("code") or CloseCode.NORMAL_CLOSURE
        reason = message.get("reason") or ""
        try:
            self.protocol.send_close(code, reason)
        except InvalidState:
            raise ClientDisconnected("Cannot send 'websocket.close': the WebSocket connection is closing.") from None
        except ProtocolError as exc:
            raise RuntimeError(f"Invalid 'websocket.close': {exc} (code {code!r})") from None
        self.phase = CLOSED
        self._flush()
        self._arm_close_timer()
        self._unpause(QUEUE_FULL)  # the client's close frame must be read: messages are dropped from now on

    def _answer_handshake(self, kind: str, message: dict[str, Any]) -> None:
        if self.handshake_handle is not None:  # answered: the timer must not keep the session alive
            self.handshake_handle.cancel()
            self.handshake_handle = None
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            # ASGI: closing before accepting is a 403, and the handshake never completes.
            self._refuse(*_FORBIDDEN)
        elif kind == "websocket.http.response.start":
            self.denial = DenialResponse(message, self.state)
            self.phase = DENIAL
        else:
            raise RuntimeError(
                f"Expected 'websocket.accept', 'websocket.close' or 'websocket.http.response.start', got {kind!r}."
            )

    def _accept(self, message: dict[str, Any]) -> None:
        accepted = self.accepted
        assert accepted is not None  # phase HANDSHAKE after a valid handshake
        headers, _ = complete_accept(accepted, message, self.state.default_header_items)
        self.protocol = open_protocol(self.settings.max_size)
        if accepted.deflate is not None:
            self.deflate = MessageDeflate(accepted.deflate, self.settings.deflate_level)
        self.carrier.accept(headers)
        self.accepted = None
        self.phase = OPEN
        self.direct = True
        self._log_handshake(self.accept_status)
        self._schedule_ping()
        if self.early:  # parsed on the next turn, as a backlog
            early, self.early = self.early, bytearray()
            self._hold_backlog(early)
        self._unpause(NOT_ACCEPTED)

    def _send_denial_body(self, message: dict[str, Any]) -> None:
        denial = self.denial
        denial.add(message.get("body", b""))
        if not message.get("more_body", False):
            self.denial = None
            self._answered(denial.status)
            self.carrier.deny(denial.status, denial.headers, denial.body())
            self._after_answer()

    def _refuse(self, status: int, reason: str, headers: list[tuple[bytes, bytes]]) -> None:
        """Answer the handshake with the server's plain-text refusal; the exchange ends there."""
        self._answered(status)
        self.carrier.refuse(status, reason, headers)
        self._after_answer()

    def _answered(self, status: int) -> None:
        self.phase = CLOSED
        self._log_handshake(status)

    def _after_answer(self) -> None:
        self._arm_close_timer()  # the carrier has ended the exchange: a peer that does not read is dropped
        self._end_receiving(CloseCode.ABNORMAL_CLOSURE, "")

    # -- running the app (asgi/app_runner.run_app calls these) --------------------------------
    def app_finished(self) -> None:
        """The app returned: answer what it left unanswered."""
        if self.phase is HANDSHAKE:
            logger.error("ASGI app returned without accepting or closing the WebSocket.")
            self._refuse(*_INTERNAL_ERROR)
        elif self.phase is DENIAL:
            logger.error("ASGI app returned without completing its WebSocket denial response.")
            self._refuse(*_INTERNAL_ERROR)
        elif self.phase is OPEN:
            self._close_by_server(CloseCode.NORMAL_CLOSURE, "")
        self._app_done()

    def app_failed(self, exc: BaseException) -> None:
        """The app raised: one log line (see app_runner.failure_kind), then a 500 or a 1011 close;
        nothing to answer once the client has gone; an abort when cancelled (shutdown timed out)."""
        kind = failure_kind(exc, self.connection_lost_ or self.phase is CLOSED)
        log_failure(kind, exc, "websocket")
        if kind is CANCELLED:
            if self.phase is not CLOSED:
                self.phase = CLOSED
                self.carrier.abort()
        elif kind is not DISCONNECTED:
            if self.phase is HANDSHAKE or self.phase is DENIAL:
                self._refuse(*_INTERNAL_ERROR)
            elif self.phase is OPEN:
                self._close_by_server(CloseCode.INTERNAL_ERROR, "")
        self._app_done()

    def _app_done(self) -> None:
        self.task = None
        if self.connection_lost_:  # the session leaves the registry once both are over
            self.state.connection_closed(self)

    # -- closing --------------------------------------------------------------------------------
    def _close_by_server(self, code: int, reason: str) -> None:
        """Start the closing handshake on the server's initiative; the app sees it at once."""
        self.phase = CLOSED
        if self.protocol.state is _WS_OPEN:
            self.protocol.send_close(code, reason)
            self._flush()
            self._arm_close_timer()
            self._unpause(QUEUE_FULL)  # the client's close frame must be read
        self._end_receiving(code, reason)

    def _fail(self, code: int, reason: str) -> None:
        """Bad input from the client: send a close frame and drop the connection (RFC 6455 7.1.7)."""
        if self.protocol.state is _WS_OPEN:
            logger.info("WebSocket connection from %s failed: %s (close code %d)", peer_name(self.client), reason, code)
            self.reported = True
            self.protocol.fail(code, reason)
            self._flush()  # the close frame goes out now, whoever called
        self.phase = CLOSED
        self._end_receiving(code, reason)

    def _report_failure(self) -> None:
        """The client broke the protocol (bad frame, too big, ...); websockets has sent the close."""
        self.reported = True
        exc = self.protocol.parser_exc
        code, reason = self._close_code()
        if isinstance(exc, EOFError):
            logger.debug("WebSocket client %s went away without a close frame", peer_name(self.client))
        else:
            logger.info("WebSocket connection from %s failed: %s (close code %d)", peer_name(self.client), exc, code)
        # Its traceback holds the frames websockets was in, with their locals (after a deflate bomb,
        # --ws-max-size of inflated bytes), in a reference cycle through the protocol: only the
        # cyclic garbage collector would free them, at some later point.
        exc.__traceback__ = None
        self.phase = CLOSED
        self._end_receiving(code, reason)

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.carrier.write(data)
            else:  # SEND_EOF: a server closes the TCP connection itself
                self._end_carrier()

    def _end_carrier(self) -> None:
        self.carrier.end()
        self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        # A peer that neither answers our close frame nor reads our last bytes is dropped.
        if self.close_handle is None and not self.connection_lost_:
            self.close_handle = self.loop.call_later(CLOSE_TIMEOUT, self.carrier.abort)

    # -- keepalive pings ------------------------------------------------------------------------
    def _schedule_ping(self) -> None:
        interval = self.settings.ping_interval
        if interval is not None:
            self.ping_handle = self.loop.call_later(interval, self._send_ping)

    def _send_ping(self) -> None:
        self.ping_handle = None
        if self.protocol.state is not _WS_OPEN:
            return
        self.ping_payload = os.urandom(4)
        self.protocol.send_ping(self.ping_payload)
        self._flush()
        timeout = self.settings.ping_timeout
        if timeout is not None:
            self.pong_handle = self.loop.call_later(timeout, self._pong_missing)
        else:
            self._schedule_ping()

    def _on_pong(self) -> None:
        self.ping_payload = None
        if self.pong_handle is not None:
            self.pong_handle.cancel()
            self.pong_handle = None
            self._schedule_ping()

    async def _writable(self) -> None:
        """Until the carrier and (HTTP/2) the connection both take writes, or the session is lost."""
        shared = self.shared_flow
        while not self.connection_lost_:
            if self.flow.write_paused:
                await self.flow.drain()
            elif shared is not None and shared.write_paused:
                await shared.drain()
            else:
                return

    def _pong_missing(self) -> None:
        self.pong_handle = None
        paused = self.flow.read_paused
        if paused and not paused & WRITES_BLOCKED:
            # Reading is paused because the app is behind, so the pong may be sitting unread (a
            # client that does not read the ping is not waited for).
            self.pong_handle = self.loop.call_later(self.settings.ping_timeout, self._pong_missing)
            return
        logger.info("WebSocket client %s did not answer a ping in time; closing (1011)", peer_name(self.client))
        self.reported = True
        self._close_by_server(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._end_carrier()  # a silent peer is not waited for

    def _write_timed_out(self) -> None:
        """--timeout-write: the client has read nothing we sent for that long (see FlowControl).
        Nothing more can reach it (not even a close frame): drop the connection; the app's pending
        send() raises ClientDisconnected and its receive() returns websocket.disconnect (1006)."""
        if self.connection_lost_:
            return
        doing = "WebSocket messages were being sent" if self.phase is OPEN else f"the WebSocket was in its {self.phase} phase"
        logger.info(
            "Aborted the WebSocket connection from %s: it read nothing for %gs while %s (--timeout-write)",
            peer_name(self.client), self.settings.write_timeout, doing,
        )
        self.reported = True
        self.carrier.abort()

    def _handshake_timed_out(self) -> None:
        """--timeout-ws-handshake: the app never accepted, closed or denied the connection."""
        if self.phase is HANDSHAKE and not self.connection_lost_:
            logger.info("WebSocket handshake not answered by the app within %ss; answering 503.", self.settings.handshake_timeout)
            self._end_receiving(CloseCode.ABNORMAL_CLOSURE, "handshake timeout")
            self._refuse(*_UNAVAILABLE)

    # -- server shutdown ------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Server is stopping: close with 1012 (service restart); refuse a pending handshake."""
        if self.phase is OPEN:
            self._close_by_server(CloseCode.SERVICE_RESTART, "server shutting down")
        elif self.phase is HANDSHAKE:
            self._end_receiving(CloseCode.SERVICE_RESTART, "server shutting down")
            self._refuse(*_UNAVAILABLE)

    def abort(self) -> None:
        """Graceful shutdown timed out: cancel the app and drop the connection."""
        if self.task is not None:
            self.task.cancel()
        self.phase = CLOSED  # aborted here: the cancelled app's app_failed() need not abort again
        self.carrier.abort()
        self.state.connection_closed(self)

    # -- access log -----------------------------------------------------------------------------
    def _log_handshake(self, status: int) -> None:
        access_log = self.state.access_log
        if access_log is not None:
            access_log.log(self, HandshakeRecord(self.scope, status, self.start_time))


def _frame_head(first: int, length: int) -> bytes:
    """RFC 6455 5.2 header of an unmasked server frame carrying ``length`` payload bytes."""
    if length < 126:
        return _HEAD_SHORT(first, length)
    if length < 65536:
        return _HEAD_16(first, 126, length)
    return _HEAD_64(first, 127, length)


def _size(message: dict[str, Any]) -> int:
    """What a queued message counts for --ws-max-queue-size: its bytes, or its characters."""
    return len(message.get("bytes") or message.get("text") or b"")
