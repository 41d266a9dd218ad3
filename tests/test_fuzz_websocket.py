"""Random WebSocket frames and fragment sequences against a real server (both parsers).

Each example opens a connection to the echo route, sends hypothesis-generated frames (reserved
opcodes, RSV bits, unmasked frames, non-minimal and oversized lengths, fragmented or oversized
control frames, stray or interleaved continuations, invalid UTF-8, bad close codes and reasons,
a stream cut mid-frame) and checks what comes back against a small model of RFC 6455:

- valid sequences: every message is echoed, pings are answered, our close is echoed;
- otherwise: the server closes with the code the model predicts (1002, 1007, 1009, or the code
  of a valid close frame we sent), after echoing at most the messages before the fault;
- always: only unmasked TEXT/BINARY/PONG/CLOSE frames from the server, the TCP connection closed
  within a bounded time, the server still serving, and no traceback in its log.
"""

from __future__ import annotations

import codecs
import os
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import ServerProcess
from .wsclient import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawWebSocket

MAX_SIZE = 2048
TIMEOUT = 3.0
VALID_OPCODES = {CONT, TEXT, BINARY, CLOSE, PING, PONG}
VALID_CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
FAST = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
SOAK = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", params=[("httptools", "uvloop"), ("h11", "asyncio")], ids=["httptools-uvloop", "h11-asyncio"])
def server(request):
    http, loop = request.param
    server = ServerProcess("apps.ws:app", "--http", http, "--loop", loop, "--ws-max-size", str(MAX_SIZE))
    try:
        server.start()
        yield server
    finally:
        server.stop()  # also when it never said it was running


class Frame:
    def __init__(self, opcode, payload=b"", fin=True, rsv=0, masked=True, length=None, width=None):
        self.opcode, self.payload, self.fin, self.rsv, self.masked = opcode, payload, fin, rsv, masked
        self.length = len(payload) if length is None else length  # declared; > len: oversized header only
        self.width = width  # force a 16- or 64-bit length field (non-minimal encoding)

    def __repr__(self):
        return (f"Frame(op={self.opcode:#x}, fin={self.fin}, rsv={self.rsv:#x}, masked={self.masked}, "
                f"length={self.length}, payload={self.payload[:40]!r})")

    def encode(self) -> bytes:
        n = self.length
        head = bytes([(0x80 if self.fin else 0) | self.rsv | self.opcode])
        mask_bit = 0x80 if self.masked else 0
        if n < 126 and self.width is None:
            head += bytes([mask_bit | n])
        elif n < 65536 and self.width != 64:
            head += bytes([mask_bit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
        if n != len(self.payload):
            return head  # an oversized length: the server must refuse it from the header alone
        if not self.masked:
            return head + self.payload
        mask = os.urandom(4)
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(self.payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def model(frames: list[Frame]) -> tuple[set[int] | None, list[tuple[int, bytes]]]:
    """What RFC 6455 (as websockets and the session read it) makes of these frames: the close
    codes the server may send (None: no fault and no close) and the messages it may echo."""
    current = None  # size of the fragmented message under way
    decoder = None
    parts: list[bytes] = []
    messages: list[tuple[int, bytes]] = []
    utf8_fault = False
    for f in frames:
        code = None
        also: set[int] = set()
        limit = MAX_SIZE if current is None else MAX_SIZE - current
        if f.opcode not in VALID_OPCODES or not f.masked:
            code = 1002
        elif f.length > limit:
            code = 1009
        elif f.rsv or (f.opcode >= CLOSE and (f.length > 125 or not f.fin)):
            code = 1002
        elif f.opcode in (TEXT, BINARY) and current is not None:
            code = 1002
        elif f.opcode == CONT and current is None:
            code = 1002
        elif f.opcode == CLOSE:
            data = f.payload
            if len(data) == 1:
                code = 1002
            elif not data:
                code = 1005  # an empty close is answered with an empty close
            else:
                code = struct.unpack("!H", data[:2])[0]
                bad_code = not (code in VALID_CLOSE_CODES or 3000 <= code < 5000)
                try:
                    data[2:].decode()
                    bad_reason = False
                except UnicodeDecodeError:
                    bad_reason = True
                if bad_code and bad_reason:
                    # Two faults in one close frame: which is checked first is the parser's
                    # choice (websockets decodes the reason first), so either answer is right.
                    code, also = 1002, {1007}
                elif bad_code:
                    code = 1002
                elif bad_reason:
                    code = 1007
            if current is not None and code not in (1002, 1007):
                # websockets fails a valid close that cuts a fragmented message short
                # ("incomplete fragmented message"), where RFC 6455 would simply close.
                code = 1002
        if code is not None:
            # The session checks UTF-8 after websockets has parsed what arrived with it, so a
            # fault websockets sees later in the same read may close first.
            return ({1007, code} | also if utf8_fault else {code} | also), messages
        if f.opcode in (TEXT, BINARY, CONT) and not utf8_fault:
            if f.opcode != CONT:
                decoder = codecs.getincrementaldecoder("utf-8")() if f.opcode == TEXT else None
                parts, kind = [], f.opcode
                current = 0
            current += len(f.payload)
            if decoder is not None:
                try:
                    decoder.decode(f.payload, f.fin)
                except UnicodeDecodeError:
                    utf8_fault = True
            parts.append(f.payload)
            if f.fin and not utf8_fault:
                messages.append((kind, b"".join(parts)))
        if f.opcode in (TEXT, BINARY, CONT) and f.fin:
            current = None
    return ({1007} if utf8_fault else None), messages


# -- strategies --------------------------------------------------------------------------------
control_payload = st.binary(max_size=125)
text_payload = st.text(max_size=60).map(str.encode)
binary_payload = st.binary(max_size=200)


@st.composite
def valid_message(draw) -> list[Frame]:
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    payload = draw(text_payload if opcode == TEXT else binary_payload)
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    frames = []
    for i, piece in enumerate(pieces):
        frames.append(Frame(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1,
                            width=draw(st.sampled_from([None, None, None, 16, 64]))))
        if i < len(pieces) - 1 and draw(st.integers(0, 3)) == 0:
            frames.append(Frame(draw(st.sampled_from([PING, PONG])), draw(control_payload)))
    return frames


valid_sequence = st.lists(valid_message(), max_size=4).map(lambda ms: [f for m in ms for f in m])


@st.composite
def fault(draw) -> Frame:
    kind = draw(st.sampled_from(["opcode", "rsv", "unmasked", "control-long", "control-fragmented", "oversize",
                                 "huge-length", "continuation", "invalid-utf8", "close-short", "close-code",
                                 "close-reason", "close-ok", "random"]))
    if kind == "opcode":
        return Frame(draw(st.sampled_from([3, 4, 5, 6, 7, 11, 12, 13, 14, 15])), draw(control_payload))
    if kind == "rsv":
        return Frame(draw(st.sampled_from([TEXT, BINARY, PING])), b"x", rsv=draw(st.sampled_from([0x10, 0x20, 0x40, 0x70])))
    if kind == "unmasked":
        return Frame(draw(st.sampled_from([TEXT, BINARY, PING, CLOSE])), b"hi", masked=False)
    if kind == "control-long":
        return Frame(draw(st.sampled_from([PING, PONG, CLOSE])), b"p" * draw(st.integers(126, 300)))
    if kind == "control-fragmented":
        return Frame(draw(st.sampled_from([PING, PONG, CLOSE])), b"p", fin=False)
    if kind == "oversize":
        return Frame(draw(st.sampled_from([TEXT, BINARY])), b"o" * (MAX_SIZE + 1))
    if kind == "huge-length":
        return Frame(draw(st.sampled_from([TEXT, BINARY, PING])), b"", length=draw(st.sampled_from([2**16, 2**32, 2**63 + 5])))
    if kind == "continuation":
        return Frame(CONT, b"c", fin=draw(st.booleans()))
    if kind == "invalid-utf8":
        return Frame(TEXT, draw(st.sampled_from([b"\xff", b"caf\xc3", b"\xed\xa0\x80", b"ok\xc0\xaf"])), fin=draw(st.booleans()))
    if kind == "close-short":
        return Frame(CLOSE, b"\x03")
    if kind == "close-code":
        return Frame(CLOSE, close_payload(draw(st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]))))
    if kind == "close-reason":
        return Frame(CLOSE, close_payload(1000, b"bad \xff reason"))
    if kind == "close-ok":
        return Frame(CLOSE, close_payload(draw(st.sampled_from([1000, 1001, 3000, 4999])), b"bye"))
    return Frame(draw(st.integers(0, 15)), draw(st.binary(max_size=130)), fin=draw(st.booleans()),
                 rsv=draw(st.sampled_from([0, 0, 0x40])), masked=draw(st.booleans()))


@st.composite
def faulty_sequence(draw) -> list[Frame]:
    frames = draw(valid_sequence)
    for _ in range(draw(st.integers(1, 2))):
        frames.insert(draw(st.integers(0, len(frames))), draw(fault()))
    return frames


# -- the exchange ------------------------------------------------------------------------------
def exchange(port: int, frames: list[Frame], cut: int | None = None) -> None:
    final_close = Frame(CLOSE, close_payload(1000))  # sent after the frames, unless cut
    fault_codes, messages = model(frames)
    codes, _ = model([*frames, final_close])
    ws = RawWebSocket(port, timeout=TIMEOUT)
    try:
        stream = b"".join(f.encode() for f in frames)
        if cut is not None:  # the client goes away in the middle of the stream
            ws.send(stream[: cut % (len(stream) + 1)])
            ws.sock.shutdown(socket.SHUT_WR)
            for opcode, _ in read_frames(ws):
                assert opcode in (TEXT, BINARY, PONG, CLOSE)
            return
        ws.send(stream)
        if fault_codes is None:
            pings = [f.payload for f in frames if f.opcode == PING]
            echoes, pongs = [], []
            while len(echoes) < len(messages) or len(pongs) < len(pings):
                opcode, payload = ws.recv_frame()
                assert opcode in (TEXT, BINARY, PONG), (opcode, payload, frames)
                (pongs if opcode == PONG else echoes).append((opcode, payload) if opcode != PONG else payload)
            assert echoes == messages and pongs == pings, frames
            ws.send(final_close.encode())
        else:
            try:
                ws.send(final_close.encode())
            except OSError:
                pass  # the server has already hung up
        received = list(read_frames(ws))
        closes = [payload for opcode, payload in received if opcode == CLOSE]
        assert len(closes) == 1, f"expected one close frame, got {received!r} for {frames!r}"
        code = struct.unpack("!H", closes[0][:2])[0] if closes[0] else 1005
        assert code in codes, f"close code {code}, expected {codes} for {frames!r}"
        closes[0][2:].decode()  # the reason is UTF-8
        echoed = [(opcode, payload) for opcode, payload in received if opcode in (TEXT, BINARY)]
        assert echoed == messages[: len(echoed)], f"echoed {echoed!r}, expected a prefix of {messages!r}"
    finally:
        ws.close()


def read_frames(ws: RawWebSocket):
    """Frames the server sends until it closes the TCP connection, which it must do in time."""
    deadline = time.monotonic() + TIMEOUT
    ws.sock.settimeout(TIMEOUT)
    while True:
        try:
            frame = ws.recv_frame()
        except EOFError:
            return
        except ConnectionResetError:
            return
        except TimeoutError:
            raise AssertionError("the server neither closed the connection nor answered in time") from None
        assert frame[0] in (TEXT, BINARY, PONG, CLOSE), frame
        yield frame
        assert time.monotonic() < deadline, "the server did not close the connection in time"


def still_serving(port: int) -> None:
    ws = RawWebSocket(port, timeout=TIMEOUT)
    try:
        ws.send(Frame(TEXT, b"still here").encode())
        assert ws.recv_frame() == (TEXT, b"still here")
    finally:
        ws.close()


def test_valid_frame_sequences_are_echoed(server):
    given(frames=valid_sequence)(FAST(lambda frames: exchange(server.port, frames)))()
    still_serving(server.port)


def test_faulty_frame_sequences_get_the_right_close_code(server):
    given(frames=faulty_sequence())(FAST(lambda frames: exchange(server.port, frames)))()
    still_serving(server.port)


def test_random_frames_never_crash_the_server(server):
    frames = st.lists(fault(), min_size=1, max_size=4)
    given(frames=frames)(FAST(lambda frames: exchange(server.port, frames)))()
    still_serving(server.port)


def test_stream_cut_mid_frame_closes_cleanly(server):
    given(frames=faulty_sequence(), cut=st.integers(0, 10_000))(
        settings(FAST, max_examples=20)(lambda frames, cut: exchange(server.port, frames, cut)))()
    still_serving(server.port)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_websocket_frames(server):
    given(frames=st.one_of(valid_sequence, faulty_sequence(), st.lists(fault(), min_size=1, max_size=6)))(
        SOAK(lambda frames: exchange(server.port, frames)))()
    still_serving(server.port)


def test_server_log_has_no_traceback(server):
    # Last in this module, on the same server as the fuzzing above.
    still_serving(server.port)
    assert "Traceback" not in server.output and "parser failed" not in server.output, server.output[-4000:]
