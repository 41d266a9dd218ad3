"""Floods of frames that make no progress, in process (--http2-max-control-frames, http2/flood.py):
a real H2Connection over tests/harness.py's FakeTransport, both codecs, both loops.

The client sets up what a flood needs (a stream being served, one answered, one whose body is
still open), then sends one kind of frame by the hundred as raw bytes. Under the budget the
connection carries on; past it, GOAWAY ENHANCE_YOUR_CALM, one log line, closed. What the zttp
codec handles without reporting (see codec.QuietFrames: ~10 ns a frame) is not counted: that
flood is served, and the test says so.
"""

from __future__ import annotations

import asyncio
import logging
import time

import h2.settings
import pytest
from hyperframe.frame import GoAwayFrame, HeadersFrame, PingFrame, SettingsFrame

from fastserve.http2.codec import ENHANCE_YOUR_CALM, PROTOCOL_ERROR, H2ProtocolError
from fastserve.http2.flood import MIN_USEFUL_CREDIT, FrameBudget
from fastserve.http2.h2_codec import H2Codec

from .h2_client import RawClient, parse_frames
from .harness import LOOPS, run_on, settle
from .test_h2_connection import CODECS, H2Peer, hello, request

LIMIT = 100


async def app(scope, receive, send):
    if scope["path"] == "/sleep":
        await asyncio.sleep(3600)
    await hello(scope, receive, send)


def empty_headers(i: int) -> bytes:
    """A HEADERS frame with an empty block on a new stream: malformed, refused by the codec."""
    frame = HeadersFrame(101 + 2 * i)
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    return frame.serialize()


def settings_ack(i: int) -> bytes:
    frame = SettingsFrame(0)
    frame.flags.add("ACK")
    return frame.serialize()


def ping_ack(i: int) -> bytes:
    frame = PingFrame(0)
    frame.opaque_data = b"12345678"
    frame.flags.add("ACK")
    return frame.serialize()


# Stream 1 is being served (its app sleeps), stream 3 is answered, stream 5's body is open.
KINDS = {
    "settings": lambda i: RawClient.settings(),
    "settings-changing-a-value": lambda i: RawClient.settings(s4=65535 + i % 2),
    "ping": lambda i: RawClient.ping(),
    "unsolicited-ping-ack": ping_ack,
    "window-update-connection": lambda i: RawClient.window_update(0, 1),
    "window-update-served-stream": lambda i: RawClient.window_update(1, 1),
    "empty-headers": empty_headers,
    "priority": lambda i: RawClient.priority(1),
    "priority-idle-stream": lambda i: RawClient.priority(1001 + 2 * i),
    "window-update-closed-stream": lambda i: RawClient.window_update(3, 1),
    "empty-data": lambda i: RawClient.data(5, b""),
    "settings-ack": settings_ack,
    "unknown-frame-type": lambda i: b"\x00\x00\x04\xfa\x00\x00\x00\x00\x00abcd",
}
# What zttp handles in ~10 ns without any event (measured): not counted, served.
ZTTP_SILENT = {"priority", "priority-idle-stream", "window-update-closed-stream", "empty-data", "settings-ack",
               "unknown-frame-type"}


def calm_goaway(data: bytes) -> bool:
    return any(isinstance(f, GoAwayFrame) and f.error_code == ENHANCE_YOUR_CALM for f in parse_frames(data))


async def flooded_peer(codec: str) -> H2Peer:
    peer = H2Peer(app, codec, http2_max_control_frames=LIMIT)
    peer.get(1, request(b"/sleep"))
    peer.get(3)
    peer.client.send_headers(5, request(b"/sleep", b"POST"), end_stream=False)
    await peer.exchange()
    assert peer.streams[3].status == 200 and peer.goaway is None
    peer.transport.take()
    return peer


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_flood_of_frames_without_progress(kind, codec, loop, caplog):
    frame = KINDS[kind]
    caplog.set_level(logging.INFO, logger="fastserve.error")

    async def scenario():
        peer = await flooded_peer(codec)
        peer.transport.feed(b"".join(frame(i) for i in range(LIMIT // 2)))  # under the budget
        await settle(peer.transport)
        assert not calm_goaway(peer.transport.take()) and not peer.transport.closing
        if codec == "zttp" and kind in ZTTP_SILENT:
            peer.transport.feed(b"".join(frame(i) for i in range(LIMIT // 2, 20 * LIMIT)))
            await settle(peer.transport)
            assert not calm_goaway(peer.transport.take()) and not peer.transport.closing
            peer.get(2001)  # and the connection still serves
            await peer.exchange()
            assert peer.streams[2001].status == 200
            return
        peer.transport.feed(b"".join(frame(i) for i in range(LIMIT // 2, 2 * LIMIT)))
        await settle(peer.transport)
        assert calm_goaway(peer.transport.take())
        assert peer.transport.closing and peer.transport.late == []
        await settle(peer.transport)
        assert peer.state.active_requests == 0  # the sleeping apps were cancelled

    run_on(loop, scenario)
    lines = [r.getMessage() for r in caplog.records if "without progress" in r.getMessage()]
    silent = codec == "zttp" and kind in ZTTP_SILENT
    assert len(lines) == (0 if silent else 1), lines
    assert not any(r.exc_info for r in caplog.records)


DOWNLOAD_SIZE = 40 * 65_535  # many windows' worth: paced by the client's credit


async def download(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"x" * DOWNLOAD_SIZE})


@pytest.mark.parametrize("codec", CODECS)
def test_credit_a_waiting_response_needs_is_not_counted(codec):
    """A download the client's window paces: each WINDOW_UPDATE lets the response go on, so a
    long download does not use up the budget (however many window updates it takes)."""
    size = DOWNLOAD_SIZE

    async def scenario():
        peer = H2Peer(download, codec, http2_max_control_frames=10, auto_ack=False)
        peer.get(1)
        await peer.exchange()
        for _ in range(2000):
            if peer.streams[1].ended or peer.goaway is not None:
                break
            received = len(peer.streams[1].body)
            peer.client.acknowledge_received_data(received - getattr(peer, "acked", 0), 1)
            peer.acked = received
            await peer.exchange(1)
        assert peer.goaway is None and len(peer.streams[1].body) == size

    run_on("asyncio", scenario)


@pytest.mark.parametrize("codec", CODECS)
def test_stream_and_connection_credit_in_separate_reads_are_not_counted(codec):
    """Both windows closed: the stream's WINDOW_UPDATE alone lets nothing go (counted), the
    connection's then does, and refunds it. A long download paced that way is not a flood."""
    size = DOWNLOAD_SIZE

    async def scenario():
        peer = H2Peer(download, codec, http2_max_control_frames=10, auto_ack=False)
        peer.get(1)
        await peer.exchange()
        for _ in range(200):
            if peer.streams[1].ended or peer.goaway is not None:
                break
            peer.client.increment_flow_control_window(32_768, stream_id=1)
            await peer.exchange(1)
            peer.client.increment_flow_control_window(32_768)
            await peer.exchange(1)
        assert peer.goaway is None and len(peer.streams[1].body) == size

    run_on("asyncio", scenario)


@pytest.mark.parametrize("codec", CODECS)
def test_credit_ahead_of_a_response_still_streaming_is_not_counted(codec):
    """An app slower than the client: nothing waits for window when the client's WINDOW_UPDATEs
    come, but a response is under way (a file, an event stream): not counted."""
    chunk, count = 16_384, 200

    async def streaming(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(count):
            await send({"type": "http.response.body", "body": b"x" * chunk, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})

    async def scenario():
        peer = H2Peer(streaming, codec, http2_max_control_frames=10)
        peer.get(1)
        for _ in range(1000):
            await peer.exchange(1)
            if peer.streams[1].ended or peer.goaway is not None:
                break
        assert peer.goaway is None and len(peer.streams[1].body) == chunk * count

    run_on("asyncio", scenario)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("closed", ["stream", "connection"])
def test_credit_flood_while_a_response_stays_blocked(codec, closed, caplog):
    """A response waits for window; the client keeps granting credit on the other window only,
    so nothing can go: each WINDOW_UPDATE counts, and the flood ends with ENHANCE_YOUR_CALM
    (rather than lasting until --http2-timeout-window)."""
    caplog.set_level(logging.INFO, logger="fastserve.error")

    async def download(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * 1_000_000})

    async def scenario():
        settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0} if closed == "stream" else None
        peer = H2Peer(download, codec, http2_max_control_frames=LIMIT, auto_ack=False, client_settings=settings)
        peer.get(1)
        await peer.exchange()
        assert peer.conn.blocked and peer.goaway is None
        peer.transport.take()
        credit = RawClient.window_update(0 if closed == "stream" else 1, 4096)
        peer.transport.feed(credit * (2 * LIMIT))
        await settle(peer.transport)
        assert calm_goaway(peer.transport.take()) and peer.transport.closing

    run_on("asyncio", scenario)
    assert sum("without progress" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("valid", [True, False], ids=["requests", "empty-headers"])
def test_h2_codec_ends_a_read_opening_thousands_of_streams(valid):
    """h2 opens every stream of a read before the adapter refuses the excess, counting them by
    walking them all (quadratic: 5,000 in one read took ~11 s). Past twice the limit open at once
    the codec ends the connection, like zttp's flood detection; under it, REFUSED_STREAM."""
    raw = RawClient()
    codec = H2Codec()
    codec.initiate_connection()
    codec.receive_data(raw.preface())
    frames = [raw.headers(2 * i + 1, request()) if valid else empty_headers(i) for i in range(5000)]
    started = time.process_time()
    with pytest.raises(H2ProtocolError) as ended:
        codec.receive_data(b"".join(frames))
    assert ended.value.error_code == ENHANCE_YOUR_CALM
    assert time.process_time() - started < 2  # generous: ~0.1 s here, against ~11 s before
    assert [f.error_code for f in parse_frames(codec.data_to_send()) if isinstance(f, GoAwayFrame)] == [ENHANCE_YOUR_CALM]


def test_budget_counts_per_window():
    budget = FrameBudget(3)
    assert not budget.spend(100.0, 2) and not budget.spend(101.0)
    assert budget.spend(102.0)  # the fourth in 10 s
    assert not budget.spend(120.0, 3)  # a new window
    budget.refund(5)
    assert budget.spent == 0
    assert MIN_USEFUL_CREDIT <= 16_384  # below any window a client credits by halves


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("codec", CODECS)
def test_flood_of_empty_continuation_frames_is_the_codecs_own(codec, loop, caplog):
    """Zero-length CONTINUATION frames after a HEADERS without END_HEADERS never reach the
    connection as events: each codec bounds them itself (zttp: ENHANCE_YOUR_CALM; h2: "too many
    continuation frames", PROTOCOL_ERROR). Pinned, so a codec upgrade that drops it shows."""
    caplog.set_level(logging.INFO, logger="fastserve.error")
    expected = ENHANCE_YOUR_CALM if codec == "zttp" else PROTOCOL_ERROR

    async def scenario():
        peer = await flooded_peer(codec)
        raw = RawClient()
        peer.transport.feed(raw.headers(7, request(), end_headers=False) + raw.continuation(7, b"") * 20_000)
        await settle(peer.transport)
        codes = [f.error_code for f in parse_frames(peer.transport.take()) if isinstance(f, GoAwayFrame)]
        assert codes == [expected] and peer.transport.closing

    run_on(loop, scenario)
    lines = [r.getMessage() for r in caplog.records if "HTTP/2 connection error" in r.getMessage()]
    assert len(lines) == 1 and f"(code {expected})" in lines[0]
