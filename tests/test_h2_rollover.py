"""HTTP/2 during a `--workers` roll-over (SIGHUP): the retiring worker sends GOAWAY with the last
stream it accepted, finishes that stream, then closes; both codecs. (Graceful shutdown of a single
process, SIGTERM, is tests/test_h2_live.py::test_graceful_shutdown_sends_goaway_and_finishes_streams.)

A raw client keeps one request in flight at all times on one connection (a new one as soon as the
previous is answered), so the GOAWAY comes while a stream is being served, whichever worker holds
the connection and whenever it is retired. Frames are parsed raw: h2's client would refuse frames
after a GOAWAY.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, RstStreamFrame

from .h2_client import RawClient, parse_frames
from .test_h2_hostile import CODECS, get
from .test_workers import wait_for_workers

pytestmark = pytest.mark.timeout(60)
REFUSED_STREAM = 0x7


def complete_frames(buffer: bytes) -> tuple[bytes, bytes]:
    """(the whole frames at the start of `buffer`, the rest)."""
    end = 0
    while end + 9 <= len(buffer):
        length = int.from_bytes(buffer[end : end + 3], "big")
        if end + 9 + length > len(buffer):
            break
        end += 9 + length
    return buffer[:end], buffer[end:]


@pytest.mark.parametrize("codec", CODECS)
def test_rollover_sends_goaway_and_finishes_the_stream_in_flight(supervised, codec):
    server = supervised("apps.workerapp:app", "--workers", "2", "--http2-codec", codec)
    old = set(wait_for_workers(server, 2))
    raw = RawClient()
    bodies: dict[int, bytes] = {}
    ended: dict[int, float] = {}  # stream -> when its END_STREAM came
    refused: set[int] = set()
    goaway: GoAwayFrame | None = None
    goaway_at = 0.0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        stream_id = 1
        sock.sendall(raw.preface() + raw.headers(stream_id, get(b"/sleep?t=0.5")))
        buffer = b""
        os.kill(server.proc.pid, signal.SIGHUP)
        while chunk := sock.recv(65536):
            frames, buffer = complete_frames(buffer + chunk)
            for frame in parse_frames(frames):
                if isinstance(frame, GoAwayFrame) and goaway is None:
                    goaway, goaway_at = frame, time.monotonic()
                elif isinstance(frame, RstStreamFrame) and frame.error_code == REFUSED_STREAM:
                    refused.add(frame.stream_id)
                elif isinstance(frame, DataFrame):
                    bodies[frame.stream_id] = bodies.get(frame.stream_id, b"") + frame.data
                    if "END_STREAM" in frame.flags:
                        ended[frame.stream_id] = time.monotonic()
                        if goaway is None:  # the next request at once: one always in flight
                            stream_id += 2
                            sock.sendall(raw.headers(stream_id, get(b"/sleep?t=0.5")))
    server.wait_for_line("Roll-over complete", timeout=20)
    assert not old & set(wait_for_workers(server, 2)), "every worker was replaced"

    assert goaway is not None and goaway.error_code == 0
    last = goaway.last_stream_id
    assert all(bodies.get(s) == b"slept" for s in range(1, last + 1, 2))  # every accepted stream answered
    assert ended[last] > goaway_at, "the stream in flight at the GOAWAY finished after it"
    assert set(range(last + 2, stream_id + 1, 2)) <= refused  # a request sent after it: refused, not lost
    assert "Traceback" not in server.output
