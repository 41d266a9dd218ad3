"""Receive-window credit on both codec adapters, under random traffic (hypothesis).

A real h2 client sends DATA (some of it padded) on several streams, within whatever windows the
server has granted; the "app" of each stream takes its body a few DATA events at a time, in any
order and at any pace; the client may reset a stream (the server then acknowledges the dropped
body, as http2/connection.py does) and open another. After every step:

- the body a stream's app has not taken is never more than the initial stream window (65,535
  bytes): credit follows what the app takes, never what arrived, so a stream whose app does not
  read holds a bounded amount of memory;
- no refusal: a client that keeps to its windows is never told it overran them.

At the end every app takes all it was sent, and every open stream, and the connection, has at
least a full frame's credit again: nothing is lost, so no stream stalls for good.
"""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastserve.http2.codec import CANCEL, ConnectionTerminated, Data, StreamReset

from .h2_client import GET, Pair, codecs

INITIAL_WINDOW = 65535
FRAME = 16384
POST = [(b":method", b"POST"), *GET[1:]]

SLOTS = range(3)  # three streams open at a time; a reset one is replaced by a new stream id
send = st.tuples(st.just("send"), st.sampled_from(SLOTS), st.integers(1, FRAME), st.one_of(st.none(), st.integers(0, 255)))
take = st.tuples(st.just("take"), st.sampled_from(SLOTS), st.integers(1, 4))
flush = st.tuples(st.just("flush"))
reset = st.tuples(st.just("reset"), st.sampled_from(SLOTS))
fill = st.tuples(st.just("fill"), st.sampled_from(SLOTS))  # as much as the windows allow, in full frames
ACTIONS = st.lists(st.one_of(send, send, fill, take, flush, reset), max_size=80)


class Traffic:
    def __init__(self, codec) -> None:
        self.p = Pair(codec())
        self.p.handshake()
        self.next_id = 1
        self.slots = [self.open() for _ in SLOTS]
        self.untaken: dict[int, deque] = {sid: deque() for sid in self.slots}

    def open(self) -> int:
        sid, self.next_id = self.next_id, self.next_id + 2
        self.p.client.send_headers(sid, POST)
        self.deliver()
        return sid

    def deliver(self) -> None:
        for event in self.p.to_server():
            assert not isinstance(event, ConnectionTerminated), event
            if isinstance(event, StreamReset):
                assert event.error_code == CANCEL, event  # only the client's own resets
            elif isinstance(event, Data):
                # (payload bytes, flow-controlled bytes to acknowledge when the app takes it)
                self.untaken[event.stream_id].append((len(event.data), event.flow_controlled_length))

    def send(self, slot: int, size: int, pad: int | None) -> None:
        sid = self.slots[slot]
        client = self.p.client
        room = min(client.local_flow_control_window(sid), client.max_outbound_frame_size)
        overhead = 0 if pad is None else pad + 1
        size = min(size, room - overhead)
        if size < 0 or (size == 0 and pad is None):
            return
        client.send_data(sid, b"x" * size, pad_length=pad)
        self.deliver()

    def fill(self, slot: int) -> None:
        client, sid = self.p.client, self.slots[slot]
        while (room := min(client.local_flow_control_window(sid), client.max_outbound_frame_size)) > 0:
            client.send_data(sid, b"x" * room)
            self.deliver()

    def take(self, slot: int, count: int) -> None:
        sid = self.slots[slot]
        queue = self.untaken[sid]
        for _ in range(min(count, len(queue))):
            self.p.server.acknowledge_received_data(sid, queue.popleft()[1])

    def reset(self, slot: int) -> None:
        sid = self.slots[slot]
        self.p.client.reset_stream(sid, CANCEL)
        self.deliver()
        dropped = self.untaken.pop(sid)
        self.p.server.acknowledge_received_data(sid, sum(flow for _, flow in dropped))  # the body nobody reads
        self.slots[slot] = new = self.open()
        self.untaken.setdefault(new, deque())

    def check_bounded(self) -> None:
        for sid in self.slots:
            held = sum(size for size, _ in self.untaken[sid])
            assert held <= INITIAL_WINDOW, (sid, held)


@pytest.mark.parametrize("codec", codecs(), ids=lambda c: c.__name__)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS)
def test_credit_follows_what_each_app_takes(codec, actions):
    traffic = Traffic(codec)
    for action in actions:
        kind, *args = action
        if kind == "flush":
            traffic.p.to_client()
        else:
            getattr(traffic, kind)(*args)
        traffic.check_bounded()
    for slot in SLOTS:
        traffic.take(slot, 1 << 30)
    traffic.p.to_client()
    client = traffic.p.client
    assert client.outbound_flow_control_window >= FRAME
    for sid in traffic.slots:
        assert client.local_flow_control_window(sid) >= FRAME, sid
