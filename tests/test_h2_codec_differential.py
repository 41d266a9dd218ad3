"""Differential test: the zttp adapter against the h2 adapter (the reference), on the same bytes.

Hypothesis builds a client's frame sequence (tests/h2_client.py RawClient: one HPACK encoder, so
both codecs decode the same blocks): streams opened with GET or POST, some with malformed header
blocks; DATA of various sizes, with or without END_STREAM; trailers; RST_STREAM; PING and PING
ACK; WINDOW_UPDATE on the connection and on streams; SETTINGS changes; PRIORITY; and at most one
connection-level fault at the end. The server may start a graceful shutdown (GOAWAY NO_ERROR)
between two reads, and answers some requests (headers, then as much body
as the window allows). The bytes are fed to both codecs in the same random splits.

Both must return the same events once normalised (adjacent Data of a stream merged: zttp may hand
over a frame's payload in pieces, and ends a body with its own event), report the same send
windows, write responses a client reads the same (headers, body, end of stream), and refuse alike: the same stream resets, or H2ProtocolError with the same error code.
When a connection error is raised, the events of that last read are lost (the connection is
over), and zttp checks a frame's header before its payload has arrived, so only the events
before that read must agree.

Left out on purpose, because the two libraries differ and codec.py / h2_codec.py say so: a client
overrunning the receive window (zttp credits on receipt), RST_STREAM on an idle stream, a
WINDOW_UPDATE of 0 on a stream, trailers without END_STREAM, trailers on a stream the server
refused or reset, including the streams refused after a graceful GOAWAY (zttp: GOAWAY
PROTOCOL_ERROR; h2 ignores them, as RFC 9113 5.4.2 asks), a self-dependent PRIORITY, an
undecodable HPACK block and a CONTINUATION flood (same refusal, different codes).
"""

from __future__ import annotations

import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastserve.http2.codec import (
    Data,
    H2ProtocolError,
    QuietFrames,
    RequestHeaders,
    StreamClosed,
    StreamReset,
)
from fastserve.http2.h2_codec import H2Codec

from .h2_client import GET, RawClient, codecs, parse_frames

pytestmark = pytest.mark.skipif(len(codecs()) < 2, reason="zttp is not installed (CPython 3.11+ only)")

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
RECEIVE_BUDGET = 60_000  # stay under the 65535-byte connection window: see the module docstring

VALID_EXTRAS = [[], [(b"x-a", b"1")], [(b"cookie", b"a=1"), (b"cookie", b"b=2")], [(b"te", b"trailers")], [(b"content-type", b"text/plain")]]
MALFORMED_EXTRAS = [
    [(b"X-Upper", b"1")],
    [(b"connection", b"close")],
    [(b"transfer-encoding", b"chunked")],
    [(b":path", b"/again")],
    [(b"x", b"a\x00b")],
    [(b"x", b"a\x01b")],
    [(b"x", b"a\x7f")],
    [(b"x", b" lead")],
    [(b"x_y", b"caf\xc3\xa9\tz")],  # valid: underscore, obs-text, inner HTAB
    [(b"host", b"elsewhere")],
    [(b":foo", b"1")],
]
FAULTS = {
    "data on an idle stream": lambda raw, next_id: raw.data(next_id, b"x"),
    "even stream": lambda raw, next_id: raw.headers(next_id + 1, GET),
    "connection window overflow": lambda raw, next_id: raw.window_update(0, 2**31 - 1),
    "oversized frame": lambda raw, next_id: raw.headers(next_id, GET, end_stream=False) + raw.oversized_frame(next_id, 20_000),
    "bad max frame size": lambda raw, next_id: raw.settings(s5=10),
    "frame inside a header block": lambda raw, next_id: raw.headers(next_id, GET, end_headers=False) + raw.ping(),
    "header list too large": lambda raw, next_id: raw.headers(next_id, [*GET, *[(b"x-big", b"v" * 4000)] * 20]),
}


class Model:
    """What the client has done, so that what it does next is mostly legal."""

    def __init__(self) -> None:
        self.raw = RawClient()
        self.next_id = 1
        self.sending: list[int] = []  # streams the client has not ended
        self.malformed: set[int] = set()  # refused by the server: no trailers on these
        self.trailers = True  # False when the server may refuse any new stream (GOAWAY)
        self.opened: list[int] = []
        self.received = 0


def draw_action(data, model: Model) -> bytes:
    raw = model.raw
    kinds = ["open", "ping", "window_update", "settings"]
    trailing = [s for s in model.sending if s not in model.malformed] if model.trailers else []
    if model.sending:
        kinds += ["data", "data", "rst"]
    if trailing:
        kinds.append("trailers")
    if model.opened:
        kinds.append("priority")
    kind = data.draw(st.sampled_from(kinds))
    if kind == "open":
        stream_id = model.next_id
        model.next_id += 2
        model.opened.append(stream_id)
        method = data.draw(st.sampled_from([b"GET", b"POST"]))
        extras = data.draw(st.sampled_from(VALID_EXTRAS + MALFORMED_EXTRAS if data.draw(st.booleans()) else VALID_EXTRAS))
        if extras in MALFORMED_EXTRAS:
            model.malformed.add(stream_id)
        end_stream = data.draw(st.booleans())
        if not end_stream:
            model.sending.append(stream_id)
        return raw.headers(stream_id, [(b":method", method), *GET[1:], *extras], end_stream=end_stream)
    if kind == "data":
        stream_id = data.draw(st.sampled_from(model.sending))
        size = data.draw(st.integers(0, min(6000, RECEIVE_BUDGET - model.received)))
        model.received += size
        end_stream = data.draw(st.booleans())
        if end_stream:
            model.sending.remove(stream_id)
        return raw.data(stream_id, b"d" * size, end_stream)
    if kind == "trailers":
        stream_id = data.draw(st.sampled_from(trailing))
        model.sending.remove(stream_id)
        fields = data.draw(st.sampled_from([[(b"x-t", b"1")], [(b":path", b"/")], [(b"Bad", b"1")]]))
        return raw.headers(stream_id, fields, end_stream=True)
    if kind == "rst":
        stream_id = data.draw(st.sampled_from(model.sending))
        model.sending.remove(stream_id)
        return raw.rst(stream_id, data.draw(st.sampled_from([0x0, 0x2, 0x8])))
    if kind == "ping":
        return raw.ping(data.draw(st.binary(min_size=8, max_size=8)), ack=data.draw(st.booleans()))
    if kind == "window_update":
        stream_id = data.draw(st.sampled_from([0, *model.opened]))
        return raw.window_update(stream_id, data.draw(st.integers(1, 100_000)))
    if kind == "settings":
        values = data.draw(st.sampled_from([{}, {"s4": 10}, {"s4": 100_000}, {"s5": 20_000}, {"s3": 50}, {"s1": 0}]))
        return raw.settings(**values)
    stream_id = data.draw(st.sampled_from(model.opened))
    return raw.priority(stream_id, depends_on=0)


def normalise(events: list) -> list:
    """Adjacent Data of a stream merged; a stream's repeated StreamReset dropped (codec.py);
    QuietFrames dropped (only the h2 adapter counts them: see codec.QuietFrames)."""
    merged: list = []
    reset: set[int] = set()
    for event in events:
        if type(event) is QuietFrames:
            continue
        if type(event) is StreamReset:
            if event.stream_id in reset:
                continue
            reset.add(event.stream_id)
        last = merged[-1] if merged else None
        if type(event) is Data and type(last) is Data and last.stream_id == event.stream_id:
            merged[-1] = Data(event.stream_id, last.data + event.data, last.flow_controlled_length + event.flow_controlled_length, event.end_stream)
        else:
            merged.append(event)
    return merged


def feed(codec, chunks: list[bytes], goaway_at: int | None):
    """Events (after the server acknowledged every body byte), or the refusal's error code.
    Before chunk `goaway_at` the server starts a graceful shutdown (GOAWAY NO_ERROR)."""
    events: list = []
    for n, chunk in enumerate(chunks):
        if n == goaway_at:
            codec.close_connection()
        try:
            got = codec.receive_data(chunk)
        except H2ProtocolError as exc:
            return events, exc.error_code
        for event in got:
            if type(event) is Data:
                codec.acknowledge_received_data(event.stream_id, event.flow_controlled_length)
        events += got
    return events, None


def respond(codec, requests: list[int], size: int) -> tuple[list, dict]:
    """Answer the requests on one codec: what each call did, and what a client would read."""
    codec.data_to_send()
    outcome = []
    for stream_id in requests:
        try:
            codec.send_headers(stream_id, 200, [(b"content-type", b"text/plain")])
            chunk = min(size, codec.send_window(stream_id))
            codec.send_data(stream_id, b"r" * chunk, end_stream=chunk == size)
            outcome.append((stream_id, chunk, codec.send_window(stream_id)))
        except StreamClosed:
            outcome.append((stream_id, "closed"))
    return outcome, client_view(codec.data_to_send())


def client_view(wire: bytes) -> dict:
    """Per stream: the decoded header blocks, the body and whether it ended (frame cuts and the
    HPACK encoding choices of each library aside)."""
    decoder = hpack.Decoder()
    streams: dict = {}
    for frame in parse_frames(wire):
        if frame.type not in (0x0, 0x1):
            continue
        headers, body, ended = streams.get(frame.stream_id, ([], b"", False))
        if frame.type == 0x1:
            headers = [*headers, decoder.decode(frame.data, raw=True)]
        else:
            body += frame.data
        streams[frame.stream_id] = (headers, body, ended or "END_STREAM" in frame.flags)
    return streams


@EXAMPLES
@given(st.data())
def test_zttp_and_h2_agree(data):
    zttp_codec, h2_codec = (cls() for cls in codecs())
    assert type(h2_codec) is H2Codec
    for codec in (zttp_codec, h2_codec):
        codec.initiate_connection()
        codec.data_to_send()
    model = Model()
    graceful_goaway = data.draw(st.booleans())
    model.trailers = not graceful_goaway
    wire = [model.raw.preface()]
    for _ in range(data.draw(st.integers(1, 25))):
        wire.append(draw_action(data, model))
    if data.draw(st.integers(0, 3)) == 0:
        wire.append(FAULTS[data.draw(st.sampled_from(sorted(FAULTS)))](model.raw, model.next_id))
    stream = b"".join(wire)
    cuts = sorted(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True) if b > a]

    goaway_at = data.draw(st.integers(1, len(chunks))) if graceful_goaway else None
    zttp_events, zttp_refusal = feed(zttp_codec, chunks, goaway_at)
    h2_events, h2_refusal = feed(h2_codec, chunks, goaway_at)
    assert zttp_refusal == h2_refusal
    zttp_events, h2_events = normalise(zttp_events), normalise(h2_events)
    if zttp_refusal is None:
        assert zttp_events == h2_events
    else:  # the batch that broke the connection is lost, and zttp may notice a frame sooner
        shorter = max(0, min(len(zttp_events), len(h2_events)) - 1)
        assert zttp_events[:shorter] == h2_events[:shorter]
    if zttp_refusal is None:
        requests = [e.stream_id for e in h2_events if type(e) is RequestHeaders]
        size = data.draw(st.integers(0, 70_000))
        assert respond(zttp_codec, requests, size) == respond(h2_codec, requests, size)
