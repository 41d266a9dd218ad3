"""The ASGI extensions on HTTP/2 streams, in process (tests/test_h2_connection.py's harness: a real
H2Connection on a real loop, an `h2` library client reading every frame back): trailers, early
hints, pathsend and zerocopysend; both codecs, both loops."""

from __future__ import annotations

import asyncio
import os

import h2.settings
import pytest

from fastserve.http2.codec import CANCEL

from .harness import LOOPS, run_on
from .test_h2_connection import CODECS, H2Peer, request

LINKS = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
SMALL_WINDOW = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4096}


@pytest.fixture(params=CODECS)
def codec(request):
    return request.param


@pytest.fixture(params=LOOPS)
def loop(request):
    return request.param


def in_loop(scenario):
    """Run `async scenario(codec, tmp_path)` for each codec, on each event loop."""

    @pytest.mark.parametrize("loop", LOOPS)
    @pytest.mark.parametrize("codec", CODECS)
    def test(codec, loop, tmp_path):
        run_on(loop, lambda: scenario(codec, tmp_path))

    test.__name__ = scenario.__name__
    test.__doc__ = scenario.__doc__
    return test


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def with_trailers(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"trailer", b"X-Checksum, x-parts")]})
    await send({"type": "http.response.body", "body": b"x" * 10_000, "more_body": True})
    await send({"type": "http.response.body", "body": b"y" * 10_000})
    await send({"type": "http.response.trailers", "headers": [(b"X-Checksum", b" abc ")], "more_trailers": True})
    await send({"type": "http.response.trailers", "headers": [(b"x-parts", b"2")]})


async def no_trailer_fields(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "trailers": True, "headers": []})
    await send({"type": "http.response.body", "body": b"body"})
    await send({"type": "http.response.trailers", "headers": []})


async def scope_extensions(scope, receive, send):
    body = b",".join(sorted(name.encode() for name in scope["extensions"]))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@in_loop
async def test_scope_offers_the_extensions(codec, tmp_path):
    peer = H2Peer(scope_extensions, codec)
    peer.get(1)
    await peer.exchange()
    assert peer.streams[1].body == (b"http.response.early_hint,http.response.pathsend,"
                                    b"http.response.trailers,http.response.zerocopysend")


@in_loop
async def test_trailers_with_and_without_te(codec, tmp_path):
    """A trailing HEADERS frame with END_STREAM, to clients that sent TE: trailers and to those that
    did not (HTTP/2 frames them either way); names lowercased, values trimmed, no content-length."""
    peer = H2Peer(with_trailers, codec)
    peer.get(1, request(extra=[(b"te", b"trailers")]))
    peer.get(3)
    await peer.exchange()
    for stream_id in (1, 3):
        stream = peer.streams[stream_id]
        assert (stream.status, stream.body, stream.ended) == (200, b"x" * 10_000 + b"y" * 10_000, True)
        assert stream.trailers == [(b"x-checksum", b"abc"), (b"x-parts", b"2")]
        assert stream.header(b"content-length") is None
        assert stream.header(b"trailer") == b"X-Checksum, x-parts"


@in_loop
async def test_trailers_wait_for_the_body_under_a_small_window(codec, tmp_path):
    """The body waits for credit; the trailers go after all of it, never ahead."""
    peer = H2Peer(with_trailers, codec, client_settings=SMALL_WINDOW, auto_ack=False)
    peer.get(1)
    await peer.exchange()
    stream = peer.streams[1]
    assert len(stream.body) == 4096 and stream.trailers is None and not stream.ended
    for _ in range(20):
        if stream.ended:
            break
        peer.client.increment_flow_control_window(4096, stream_id=1)
        peer.client.increment_flow_control_window(4096)
        await peer.exchange(1)
    assert stream.body == b"x" * 10_000 + b"y" * 10_000
    assert stream.trailers == [(b"x-checksum", b"abc"), (b"x-parts", b"2")] and stream.ended


@in_loop
async def test_no_trailer_fields_end_the_stream_with_empty_data(codec, tmp_path):
    peer = H2Peer(no_trailer_fields, codec)
    peer.get(1)
    await peer.exchange()
    stream = peer.streams[1]
    assert (stream.body, stream.trailers, stream.ended) == (b"body", None, True)


@in_loop
async def test_trailers_of_a_head_response_are_dropped(codec, tmp_path):
    peer = H2Peer(with_trailers, codec)
    peer.get(1, request(method=b"HEAD"))
    peer.get(3)  # the connection goes on
    await peer.exchange()
    assert (peer.streams[1].status, peer.streams[1].body, peer.streams[1].trailers) == (200, b"", None)
    assert peer.streams[1].ended and peer.streams[3].trailers is not None


@in_loop
async def test_invalid_trailer_field_resets_the_stream(codec, tmp_path):
    """A trailer the cycle refuses (content-length) is an app error: the body is out, so the stream
    is reset; the connection serves the next request."""

    async def bad(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "trailers": True, "headers": []})
        await send({"type": "http.response.body", "body": b"partial"})
        await send({"type": "http.response.trailers", "headers": [(b"content-length", b"0")]})

    peer = H2Peer(bad, codec)
    peer.get(1)
    await peer.exchange()
    assert peer.streams[1].body == b"partial" and peer.streams[1].reset is not None
    assert peer.streams[1].trailers is None
    peer.get(3)
    await peer.exchange()
    assert peer.streams[3].body == b"partial"


def hinting(when: str):
    async def app(scope, receive, send):
        if when == "first":
            await send({"type": "http.response.early_hint", "links": LINKS})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if when == "after start":  # the head is still held by the server: the hint goes first
            await send({"type": "http.response.early_hint", "links": LINKS})
        await send({"type": "http.response.body", "body": b"fi", "more_body": True})
        if when == "after the head":  # the final HEADERS frame is out: too late
            await send({"type": "http.response.early_hint", "links": LINKS})
        await send({"type": "http.response.body", "body": b"nal"})

    return app


@pytest.mark.parametrize("when", ["first", "after start"])
def test_early_hints_before_the_head(codec, loop, when):
    """A 103 HEADERS frame without END_STREAM, one link field per link, then the final response."""

    async def scenario():
        peer = H2Peer(hinting(when), codec)
        peer.get(1)
        await peer.exchange()
        stream = peer.streams[1]
        assert stream.informational == [103]
        assert stream.hints == [[(b"link", LINKS[0]), (b"link", LINKS[1])]]
        assert (stream.status, stream.body, stream.ended) == (200, b"final", True)

    run_on(loop, scenario)


@in_loop
async def test_early_hints_after_the_head_are_dropped(codec, tmp_path):
    peer = H2Peer(hinting("after the head"), codec)
    peer.get(1)
    await peer.exchange()
    stream = peer.streams[1]
    assert stream.informational == []
    assert (stream.status, stream.body, stream.ended) == (200, b"final", True)


# -- pathsend and zerocopysend ------------------------------------------------------------------
def pathsend(path: str, headers=()):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.pathsend", "path": path})

    return app


def make_file(tmp_path, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    return str(path), data


async def grant_until_ended(peer: H2Peer, stream_id: int, step: int = 4096, rounds: int = 400) -> None:
    for _ in range(rounds):
        if peer.streams[stream_id].ended or peer.streams[stream_id].reset is not None:
            return
        peer.client.increment_flow_control_window(step, stream_id=stream_id)
        peer.client.increment_flow_control_window(step)
        await peer.exchange(1)


@in_loop
async def test_pathsend_larger_than_the_window(codec, tmp_path):
    """A file of 100,000 bytes to a client granting 4 KiB at a time: it goes out under the windows,
    whole, with its content-length; the server never runs ahead of the credit, and closes the file."""
    path, data = make_file(tmp_path, 100_000)
    peer = H2Peer(pathsend(path), codec, client_settings=SMALL_WINDOW, auto_ack=False)
    before = open_fds()
    peer.get(1)
    await peer.exchange()
    stream = peer.streams[1]
    assert stream.header(b"content-length") == b"100000"
    assert len(stream.body) == 4096 and not stream.ended
    await grant_until_ended(peer, 1)
    assert stream.body == data and stream.ended
    assert open_fds() == before and not peer.conn.streams


def zerocopy_parts(path: str, parts: list[tuple[int, int]], length: bool):
    """The app sends `parts` (offset, count) of its open file, each a zerocopysend message."""

    async def app(scope, receive, send):
        total = sum(count for _, count in parts)
        headers = [(b"content-length", b"%d" % total)] if length else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with open(path, "rb") as file:
            for i, (offset, count) in enumerate(parts):
                await send({"type": "http.response.zerocopysend", "file": file, "offset": offset, "count": count,
                            "more_body": i < len(parts) - 1})

    return app


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "no length"])
def test_zerocopysend_offset_and_count(codec, loop, length, tmp_path):
    """Parts of the app's file, in order, whole; with the app's content-length or without (then none)."""
    path, data = make_file(tmp_path, 300_000)
    parts = [(100, 70_000), (200_000, 0), (5, 100_000)]

    async def scenario():
        peer = H2Peer(zerocopy_parts(path, parts, length), codec)
        peer.get(1)
        await peer.exchange(6)
        stream = peer.streams[1]
        assert stream.body == data[100:70_100] + data[5:100_005] and stream.ended
        assert stream.header(b"content-length") == (b"170000" if length else None)

    run_on(loop, scenario)


@in_loop
async def test_zerocopysend_empty_last_part_ends_the_stream(codec, tmp_path):
    path, data = make_file(tmp_path, 1000)
    peer = H2Peer(zerocopy_parts(path, [(0, 1000), (1000, 0)], length=False), codec)
    peer.get(1)
    await peer.exchange()
    assert peer.streams[1].body == data and peer.streams[1].ended


@in_loop
async def test_pathsend_head_gets_the_length_and_no_body(codec, tmp_path):
    path, _ = make_file(tmp_path, 12_345)
    peer = H2Peer(pathsend(path), codec)
    peer.get(1, request(method=b"HEAD"))
    await peer.exchange()
    stream = peer.streams[1]
    assert (stream.status, stream.body, stream.ended) == (200, b"", True)
    assert stream.header(b"content-length") == b"12345"


@in_loop
async def test_pathsend_of_a_missing_file_is_a_500_on_the_stream(codec, tmp_path):
    peer = H2Peer(pathsend(str(tmp_path / "missing")), codec)
    peer.get(1)
    peer.get(3, request(method=b"HEAD"))
    await peer.exchange()
    assert (peer.streams[1].status, peer.streams[1].body) == (500, b"Internal Server Error")
    assert peer.streams[1].ended and peer.streams[3].status == 500
    assert peer.goaway is None  # the connection goes on


@in_loop
async def test_file_shorter_than_its_count_resets_the_stream(codec, tmp_path):
    """The file shrank after the app measured it (FileEnded): the client sees the stream reset,
    not a short body that looks complete."""
    path, data = make_file(tmp_path, 100_000)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        with open(path, "rb") as file:
            await send({"type": "http.response.zerocopysend", "file": file, "offset": 0, "count": 100_000})

    peer = H2Peer(app, codec, client_settings=SMALL_WINDOW, auto_ack=False)
    peer.get(1)
    await peer.exchange()
    assert len(peer.streams[1].body) == 4096
    os.truncate(path, 5_000)  # while the rest waits for credit
    await grant_until_ended(peer, 1)
    stream = peer.streams[1]
    assert stream.reset is not None and not stream.ended
    assert stream.body == data[:5_000]
    assert not peer.conn.streams


@in_loop
async def test_reset_mid_file_stops_it_and_closes_the_file(codec, tmp_path):
    """The client resets the stream while the file waits for window: the sending stops, the app's
    send() raises, pathsend's descriptor is closed, and the connection serves the next request."""
    path, data = make_file(tmp_path, 100_000)
    raised = []

    async def app(scope, receive, send):
        try:
            await pathsend(path)(scope, receive, send)
        except OSError as exc:
            raised.append(exc)
            raise

    peer = H2Peer(app, codec, client_settings=SMALL_WINDOW, auto_ack=False)
    await peer.exchange()
    before = open_fds()
    peer.get(1)
    await peer.exchange()
    assert len(peer.streams[1].body) == 4096
    assert open_fds() == before + 1  # the file, open while it waits for credit
    peer.client.reset_stream(1, CANCEL)
    await peer.exchange()
    assert len(raised) == 1 and open_fds() == before and not peer.conn.streams
    assert not peer.conn.blocked
    peer.client.increment_flow_control_window(100_000)
    peer.get(3, request(method=b"HEAD"))
    await peer.exchange()
    assert peer.streams[3].status == 200 and peer.streams[3].header(b"content-length") == b"100000"


@in_loop
async def test_connection_lost_mid_file_closes_the_file(codec, tmp_path):
    path, _ = make_file(tmp_path, 100_000)
    peer = H2Peer(pathsend(path), codec, client_settings=SMALL_WINDOW, auto_ack=False)
    await peer.exchange()
    before = open_fds()
    peer.get(1)
    await peer.exchange()
    assert open_fds() == before + 1
    peer.transport.close()
    await peer.exchange()
    assert open_fds() == before


@in_loop
async def test_window_that_stays_closed_resets_the_file_stream(codec, tmp_path):
    """A client that never grants credit: the stream is reset after --http2-timeout-window, the
    file closed."""
    path, _ = make_file(tmp_path, 100_000)
    peer = H2Peer(pathsend(path), codec, client_settings=SMALL_WINDOW, auto_ack=False, http2_timeout_window=0.2)
    await peer.exchange()
    before = open_fds()
    peer.get(1)
    await peer.exchange()
    assert open_fds() == before + 1
    for _ in range(100):  # up to 5 s: generous under load
        await asyncio.sleep(0.05)
        await peer.exchange(1)
        if peer.streams[1].reset is not None:
            break
    assert peer.streams[1].reset == CANCEL
    await peer.exchange()
    assert open_fds() == before and not peer.conn.streams


@in_loop
async def test_trailers_after_a_content_length_body_and_after_a_file(codec, tmp_path):
    """HTTP/2 carries trailers after a body with a content-length (HTTP/1.1 cannot) and after a
    body sent from a file (zerocopysend); the body is whole and its length right."""
    path, data = make_file(tmp_path, 50_000)

    async def app(scope, receive, send):
        from_file = scope["path"] == "/file"
        headers = [(b"content-length", b"50000")] if from_file else [(b"content-length", b"4")]
        await send({"type": "http.response.start", "status": 200, "trailers": True, "headers": headers})
        if from_file:
            with open(path, "rb") as file:
                await send({"type": "http.response.zerocopysend", "file": file, "count": 50_000})
        else:
            await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [(b"x-done", b"yes")]})

    peer = H2Peer(app, codec)
    peer.get(1)
    peer.get(3, request(b"/file"))
    await peer.exchange(6)
    for stream_id, body in ((1, b"body"), (3, data)):
        stream = peer.streams[stream_id]
        assert (stream.body, stream.trailers, stream.ended) == (body, [(b"x-done", b"yes")], True)
        assert stream.header(b"content-length") == b"%d" % len(body)


@in_loop
async def test_a_file_does_not_hold_up_the_other_streams(codec, tmp_path):
    """A large file on stream 1 and a small response on stream 3 of the same connection: the file
    takes the connection's first window, the small response goes with the first credit after it
    (it waits for credit, not for the file)."""
    path, data = make_file(tmp_path, 1_000_000)

    async def app(scope, receive, send):
        if scope["path"] == "/file":
            await pathsend(path)(scope, receive, send)
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"small"})

    peer = H2Peer(app, codec)
    peer.get(1, request(b"/file"))
    peer.get(3)
    await peer.exchange(1)
    assert len(peer.streams[1].body) == 65_535 and not peer.streams[3].body  # the connection's window
    await peer.exchange(1)
    assert peer.streams[3].body == b"small" and peer.streams[3].ended
    assert not peer.streams[1].ended
    await peer.exchange(40)
    assert peer.streams[1].body == data and peer.streams[1].ended
