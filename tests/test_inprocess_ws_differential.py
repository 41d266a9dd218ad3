"""Differential test: the session's direct-framing fast path against websockets' own parser.

The same generated client bytes (same masks, same read splits) go to two sessions on the same
app: one as the server runs it (complete unfragmented text and binary frames framed by the
session itself, see ``WebSocketSession._read_frames``), one with direct framing off, so that every
byte goes through websockets' parser. Both must hand the app the same ASGI messages and write the
same bytes back (echoes, pongs, and the close frame with its code and reason), and both must end
(or keep) the connection alike.

The frames: text (valid and invalid UTF-8) and binary, fragmented or not, with pings and pongs
between fragments, payloads around the length encodings (125/126, 65535/65536) and the size
limit, masked with a zero or a random key, non-minimal lengths, and faults (reserved bits and
opcodes, unmasked frames, long or fragmented control frames, stray continuations, bad close codes
and reasons, one-byte close payloads). tests/test_fuzz_websocket.py checks the real server against
a model of RFC 6455; this test needs no model: websockets is the reference.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions.permessage_deflate import PerMessageDeflate

from .harness import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Connection,
    client_frame,
    close_payload,
    run_on,
    split_handshake,
    upgrade_request,
)

MAX_SIZE = 65536
EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
SOAK = settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
SIZES = [0, 1, 2, 124, 125, 126, 127, 65534, 65535, 65536, 65537]


def echo_app(log: list):
    async def app(scope, receive, send):
        while True:
            message = await receive()
            log.append(message)
            kind = message["type"]
            if kind == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif kind == "websocket.receive":
                if message.get("text") is not None:
                    await send({"type": "websocket.send", "text": message["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                return

    return app


# -- strategies --------------------------------------------------------------------------------
masks = st.one_of(st.just(b"\0\0\0\0"), st.binary(min_size=4, max_size=4))


@st.composite
def payload(draw, text: bool) -> bytes:
    size = draw(st.one_of(st.sampled_from(SIZES), st.integers(0, 300)))
    if text:
        prefix = draw(st.text(max_size=20)).encode()
        data = (prefix + b"a" * size)[: max(size, len(prefix))]
        if draw(st.integers(0, 4)) == 0:  # invalid UTF-8 somewhere
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])) + data[at:]
        return data
    return bytes(draw(st.integers(0, 255)) for _ in range(min(size, 8))) + b"b" * max(0, size - 8)


@st.composite
def message_frames(draw) -> list[bytes]:
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    data = draw(payload(opcode == TEXT))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    frames = []
    for i, piece in enumerate(pieces):
        width = draw(st.sampled_from([None, None, None, 16, 64])) if len(piece) < 65536 else None
        frames.append(client_frame(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1,
                                   mask=draw(masks), width=width))
        if i < len(pieces) - 1 and draw(st.integers(0, 3)) == 0:
            frames.append(client_frame(draw(st.sampled_from([PING, PONG])), draw(st.binary(max_size=125)),
                                       mask=draw(masks)))
    return frames


@st.composite
def odd_frame(draw) -> bytes:
    kind = draw(st.sampled_from(["ping", "pong", "close", "close-code", "close-reason", "close-short", "rsv",
                                 "opcode", "unmasked", "control-long", "control-fragmented", "cont", "unfinished",
                                 "random"]))
    mask = draw(masks)
    if kind in ("ping", "pong"):
        return client_frame(PING if kind == "ping" else PONG, draw(st.binary(max_size=125)), mask=mask)
    if kind == "close":
        code = draw(st.sampled_from([1000, 1001, 1003, 1008, 1011, 3000, 4999]))
        return client_frame(CLOSE, close_payload(code, draw(st.text(max_size=20)).encode()), mask=mask)
    if kind == "close-code":
        code = draw(st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]))
        return client_frame(CLOSE, close_payload(code), mask=mask)
    if kind == "close-reason":
        return client_frame(CLOSE, close_payload(1000, b"bad \xff"), mask=mask)
    if kind == "close-short":
        return client_frame(CLOSE, draw(st.sampled_from([b"", b"\x03"])), mask=mask)
    if kind == "rsv":
        return client_frame(draw(st.sampled_from([TEXT, BINARY, PING])), b"x",
                            rsv=draw(st.sampled_from([0x10, 0x20, 0x40])), mask=mask)
    if kind == "opcode":
        return client_frame(draw(st.sampled_from([3, 7, 11, 15])), b"x", mask=mask)
    if kind == "unmasked":
        return client_frame(draw(st.sampled_from([TEXT, BINARY, PING])), b"hi", masked=False)
    if kind == "control-long":
        return client_frame(draw(st.sampled_from([PING, PONG, CLOSE])), b"p" * 126, mask=mask)
    if kind == "control-fragmented":
        return client_frame(draw(st.sampled_from([PING, CLOSE])), b"", fin=False, mask=mask)
    if kind == "cont":
        return client_frame(CONT, b"c", fin=draw(st.booleans()), mask=mask)
    if kind == "unfinished":  # a fragmented message the next message interrupts
        return client_frame(draw(st.sampled_from([TEXT, BINARY])), b"u", fin=False, mask=mask)
    return client_frame(draw(st.integers(0, 15)), draw(st.binary(max_size=130)), fin=draw(st.booleans()),
                        rsv=draw(st.sampled_from([0, 0, 0x40])), mask=mask, masked=draw(st.booleans()))


@st.composite
def stream(draw) -> tuple[list[bytes], list[int]]:
    """Client frames, and where the fast path's reads split their bytes."""
    frames: list[bytes] = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.integers(0, 2)):
            frames += draw(message_frames())
        else:
            frames.append(draw(odd_frame()))
    size = sum(map(len, frames))
    if draw(st.booleans()):
        cuts = sorted(set(draw(st.lists(st.integers(1, max(1, size - 1)), max_size=6))))
    else:
        cuts = []
    return frames, cuts


# -- the comparison -----------------------------------------------------------------------------
async def session_outcome(reads: list[bytes], direct: bool, eof: bool) -> dict:
    log: list = []
    conn = Connection(echo_app(log), "httptools", ws_max_size=MAX_SIZE, ws_ping_interval=0)
    conn.feed(upgrade_request())
    await conn.settle()
    head, rest = split_handshake(conn.transport.take())
    assert head.startswith(b"HTTP/1.1 101 ") and rest == b""
    session = conn.session
    assert session.direct  # as the server runs it (no compression negotiated)
    if not direct:
        session.direct = False  # every byte through websockets' parser
    for data in reads:  # in one go: the app runs after the last read on both paths
        conn.feed(data)
    if eof:
        conn.feed_eof()
    await conn.settle()
    return {
        "messages": log,
        "written": conn.transport.data,
        "late": conn.transport.late,
        "closed": conn.closed,
        "aborted": conn.transport.aborted,
    }


def compare(frames: list[bytes], cuts: list[int], loop: str, eof: bool = False) -> None:
    """The fast path reads the bytes split at ``cuts``; the reference reads one frame at a time.

    (One frame per read for the reference: without direct framing websockets parses a whole read
    before the session checks the UTF-8 of the messages in it, so a ping after an invalid text
    frame in the same read is answered, or a later fault's close code wins. The fast path fails
    at the first fault, as the reference does when each frame is its own read.)
    """
    data = b"".join(frames)
    fast_reads = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

    async def both():
        fast = await session_outcome(fast_reads, True, eof)
        reference = await session_outcome(frames, False, eof)
        return fast, reference

    fast, reference = run_on(loop, both)
    assert fast["messages"] == reference["messages"], (frames, cuts)
    assert fast["written"] == reference["written"], (frames, cuts)
    assert fast == reference, (frames, cuts)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_direct_framing_matches_websockets(loop):
    given(case=stream())(EXAMPLES(lambda case: compare(*case, loop)))()


def test_direct_framing_matches_websockets_on_a_stream_cut_short():
    given(case=stream())(settings(EXAMPLES, max_examples=40)(lambda case: compare(*case, "asyncio", eof=True)))()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_sizes_around_the_length_encodings(opcode, size):
    frames = [client_frame(opcode, b"a" * size, mask=b"\x01\x02\x03\x04"),
              client_frame(CLOSE, close_payload(1000), mask=b"abcd")]
    compare(frames, [], "asyncio")
    compare(frames, [1, 2, 3, 6, size // 2 + 7], "asyncio")


FAULTS = {
    "unmasked-text": client_frame(TEXT, b"hi", masked=False),
    "unmasked-ping": client_frame(PING, b"hi", masked=False),
    "unfinished": client_frame(TEXT, b"u", fin=False, mask=b"wxyz"),
    "stray-cont": client_frame(CONT, b"c", mask=b"wxyz"),
    "rsv": client_frame(BINARY, b"x", rsv=0x40, mask=b"wxyz"),
    "opcode": client_frame(11, b"x", mask=b"wxyz"),
    "long-ping": client_frame(PING, b"p" * 126, mask=b"wxyz"),
    "fragmented-close": client_frame(CLOSE, b"", fin=False, mask=b"wxyz"),
    "invalid-utf8": client_frame(TEXT, b"ok\xff", mask=b"wxyz"),
    "too-big": client_frame(BINARY, b"b" * (MAX_SIZE + 1), mask=b"wxyz"),
    "close-code": client_frame(CLOSE, close_payload(1005), mask=b"wxyz"),
    "close-reason": client_frame(CLOSE, close_payload(1000, b"\xff"), mask=b"wxyz"),
    "close-short": client_frame(CLOSE, b"\x03", mask=b"wxyz"),
    "ping": client_frame(PING, b"are you there", mask=b"wxyz"),
    "close": client_frame(CLOSE, close_payload(4001, b"bye"), mask=b"wxyz"),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_each_fault_between_messages(fault):
    before = client_frame(TEXT, b"before", mask=b"\0\0\0\0")
    after = [client_frame(BINARY, b"after", mask=b"1234"), client_frame(TEXT, b"x" * 200, mask=b"5678")]
    frames = [before, FAULTS[fault], *after]
    compare(frames, [], "asyncio")
    size = sum(map(len, frames))
    compare(frames, list(range(1, size, 3)), "asyncio")  # split everywhere


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_direct_framing_matches_websockets():
    given(case=stream())(SOAK(lambda case: compare(*case, "uvloop")))()


# -- permessage-deflate: the session inflates and compresses itself; websockets' extension is the reference
DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
DEFLATE_THRESHOLD = 64  # replies on both sides of it: compressed and not
DEFLATE_SIZES = [0, 1, 63, 64, 125, 126, 2043, 2044, 65535]  # not MAX_SIZE itself: see below


class ReferenceDeflate(PerMessageDeflate):
    """websockets' extension, with the session's two intended differences: a message (or
    fragment) inflating to exactly the limit is taken (test_a_compressed_message_of_exactly_max_size_is_taken),
    and a client that ends its DEFLATE stream (a BFINAL block) starts a new one with its next
    message, data after the end of a stream being a fault
    (test_a_client_ending_its_deflate_stream_starts_a_new_one)."""

    def decode(self, frame, *, max_size=None):
        try:  # a byte more, to tell "exactly the limit" from "over it", as the session does
            frame = super().decode(frame, max_size=None if max_size is None else max_size + 1)
        except PayloadTooBig:
            raise PayloadTooBig(None, max_size) from None
        if max_size is not None and len(frame.data) > max_size:
            raise PayloadTooBig(None, max_size)
        decoder = getattr(self, "decoder", None)
        if decoder is not None and decoder.eof:
            if len(decoder.unused_data) > (4 if frame.fin else 0):
                raise ProtocolError("decompression failed")
            self.decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits)
        return frame


class ClientDeflater:
    """The client's compression context, taken over from message to message (as browsers do)."""

    def __init__(self) -> None:
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -12)

    def message(self, data: bytes) -> bytes:
        compressed = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        assert compressed.endswith(b"\x00\x00\xff\xff")
        return compressed[:-4]


@st.composite
def deflate_stream(draw) -> tuple[list[bytes], list[int]]:
    """Compressed and uncompressed messages (fragmented or not, with control frames between
    fragments), deflate faults (corrupt data, bombs, RSV1 where it must not be) and the other odd
    frames, compressed with one client context; and where the fast path's reads split them."""
    client = ClientDeflater()
    frames: list[bytes] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["compressed", "compressed", "compressed", "plain", "odd", "fault"]))
        if kind == "plain":
            frames += draw(message_frames())
            continue
        if kind == "odd":
            frames.append(draw(odd_frame()))
            continue
        opcode = draw(st.sampled_from([TEXT, BINARY]))
        if kind == "fault":
            fault = draw(st.sampled_from(["corrupt", "bomb", "fragmented-bomb", "rsv1-cont", "compressed-ping"]))
            if fault == "corrupt":
                frames.append(client_frame(opcode, draw(st.binary(max_size=40)), rsv=0x40, mask=draw(masks)))
            elif fault == "bomb":
                bomb = ClientDeflater().message(b"\0" * (MAX_SIZE + draw(st.integers(1, 3000))))
                frames.append(client_frame(opcode, bomb, rsv=0x40, mask=draw(masks)))
            elif fault == "fragmented-bomb":  # too big only once a later fragment is inflated
                bomb = ClientDeflater().message(b"\0" * (MAX_SIZE + draw(st.integers(1, 3000))))
                cut = draw(st.integers(1, len(bomb) - 1))
                frames.append(client_frame(opcode, bomb[:cut], fin=False, rsv=0x40, mask=draw(masks)))
                frames.append(client_frame(CONT, bomb[cut:], mask=draw(masks)))
            elif fault == "rsv1-cont":
                frames.append(client_frame(opcode, client.message(b"first"), fin=False, rsv=0x40, mask=draw(masks)))
                frames.append(client_frame(CONT, b"x", rsv=0x40, mask=draw(masks)))
            else:
                frames.append(client_frame(PING, b"p", rsv=0x40, mask=draw(masks)))
            continue
        size = draw(st.one_of(st.sampled_from(DEFLATE_SIZES), st.integers(0, 300)))
        data = draw(payload(opcode == TEXT))[:size] if draw(st.booleans()) else b"ab" * (size // 2)
        compressed = client.message(data)
        cuts = sorted(draw(st.lists(st.integers(0, len(compressed)), max_size=3)))
        pieces = [compressed[a:b] for a, b in zip([0, *cuts], [*cuts, len(compressed)], strict=True)]
        for i, piece in enumerate(pieces):
            frames.append(client_frame(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1,
                                       rsv=0x40 if i == 0 else 0, mask=draw(masks)))
            if i < len(pieces) - 1 and draw(st.integers(0, 3)) == 0:
                frames.append(client_frame(PING, draw(st.binary(max_size=125)), mask=draw(masks)))
    size = sum(map(len, frames))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, size - 1)), max_size=6)))) if draw(st.booleans()) else []
    return frames, cuts


async def deflate_outcome(reads: list[bytes], direct: bool, eof: bool) -> dict:
    log: list = []
    conn = Connection(echo_app(log), "httptools", ws_max_size=MAX_SIZE, ws_ping_interval=0,
                      ws_deflate_threshold=DEFLATE_THRESHOLD)
    conn.feed(upgrade_request(extra=DEFLATE_OFFER))
    await conn.settle()
    head, rest = split_handshake(conn.transport.take())
    assert b"server_max_window_bits=12; client_max_window_bits=12" in head and rest == b""
    session = conn.session
    assert session.direct and session.deflate is not None and not session.protocol.extensions
    if not direct:  # the reference: every byte through websockets' parser and its extension
        session.direct = False
        session.protocol.extensions = [ReferenceDeflate(False, False, 12, 12)]
    for data in reads:
        conn.feed(data)
    if eof:
        conn.feed_eof()
    await conn.settle()
    return {"messages": log, "written": conn.transport.data, "late": conn.transport.late,
            "closed": conn.closed, "aborted": conn.transport.aborted}


def compare_deflate(frames: list[bytes], cuts: list[int], loop: str, eof: bool = False) -> None:
    """As compare(), with permessage-deflate agreed. The replies are compressed by the session on
    both sides (the same bytes); what is compared is how the client's frames were read."""
    data = b"".join(frames)
    fast_reads = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

    async def both():
        return await deflate_outcome(fast_reads, True, eof), await deflate_outcome(frames, False, eof)

    fast, reference = run_on(loop, both)
    assert fast["messages"] == reference["messages"], (frames, cuts)
    assert fast["written"] == reference["written"], (frames, cuts)
    assert fast == reference, (frames, cuts)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_own_deflate_matches_websockets_extension(loop):
    given(case=deflate_stream())(EXAMPLES(lambda case: compare_deflate(*case, loop)))()


def test_own_deflate_matches_websockets_extension_on_a_stream_cut_short():
    given(case=deflate_stream())(settings(EXAMPLES, max_examples=40)(
        lambda case: compare_deflate(*case, "asyncio", eof=True)))()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_own_deflate_matches_websockets_extension():
    given(case=deflate_stream())(SOAK(lambda case: compare_deflate(*case, "uvloop")))()


def test_a_compressed_message_of_exactly_max_size_is_taken():
    """Where the session departs from websockets' extension on purpose: a message inflating to
    exactly --ws-max-size is taken, as an uncompressed one is (websockets' inflate stops at the
    limit with the end of the stream unread and calls that too big); a byte more is 1009."""
    client = ClientDeflater()
    exact = client_frame(BINARY, client.message(b"m" * MAX_SIZE), rsv=0x40, mask=b"abcd")
    over = client_frame(BINARY, client.message(b"n" * (MAX_SIZE + 1)), rsv=0x40, mask=b"abcd")

    async def scenario():
        return await deflate_outcome([exact, over], True, False)

    outcome = run_on("asyncio", scenario)
    assert outcome["messages"][1] == {"type": "websocket.receive", "bytes": b"m" * MAX_SIZE}
    reason = f"frame exceeds limit of {MAX_SIZE} bytes".encode()
    close = bytes((0x88, 2 + len(reason))) + (1009).to_bytes(2, "big") + reason
    assert outcome["written"].endswith(close) and outcome["closed"]


def test_a_client_ending_its_deflate_stream_starts_a_new_one():
    """A message may end its DEFLATE stream (BFINAL): the next message is a new stream, inflated
    from scratch. (websockets' extension keeps the ended inflater, which then hands back nothing
    and keeps every later byte: memory without end.) Data after the end of a stream is 1002."""
    def finished(data: bytes) -> bytes:
        deflater = zlib.compressobj(6, zlib.DEFLATED, -12)
        return deflater.compress(data) + deflater.flush(zlib.Z_FINISH)

    frames = [client_frame(TEXT, finished(b"one " * 50), rsv=0x40, mask=b"abcd"),
              client_frame(TEXT, finished(b"two " * 50), rsv=0x40, mask=b"efgh")]
    garbage = client_frame(BINARY, finished(b"three") + b"\x00garbage", rsv=0x40, mask=b"ijkl")

    async def scenario():
        return await deflate_outcome(frames, True, False), await deflate_outcome([garbage], True, False)

    outcome, failed = run_on("asyncio", scenario)
    assert outcome["messages"][1:] == [{"type": "websocket.receive", "text": "one " * 50},
                                       {"type": "websocket.receive", "text": "two " * 50}]
    reason = b"decompression failed"
    assert failed["written"].endswith(bytes((0x88, 2 + len(reason))) + (1002).to_bytes(2, "big") + reason)
    assert failed["closed"]
