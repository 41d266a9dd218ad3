"""Floods of frames without progress against a real fastserve, on both codecs (--http2-max-control-frames).

A raw-socket client that does read what the server sends (and discards it) opens the preface,
a stream being served (its app sleeps) and one whose body stays open, then floods one kind of
frame; it does so again on new connections for about a second, while a normal HTTP/2 client
(httpx, prior knowledge) is served. Each flooding connection gets GOAWAY ENHANCE_YOUR_CALM and
one log line; what zttp handles without reporting (codec.QuietFrames, ~10 ns a frame) is served
instead, and the test bounds the server's CPU time for it.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from hyperframe.frame import HeadersFrame

from .h2_client import RawClient
from .test_h2_hostile import CODECS, get, rss_kib

ENHANCE_YOUR_CALM = 0xB
FLOOD_SECONDS = 1.0
CHUNK = 100  # frames per send


def empty_headers(i: int) -> bytes:
    frame = HeadersFrame(101 + 2 * i)
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    return frame.serialize()


# Stream 1 is served (its app sleeps), stream 3's body is open, stream 5 is answered.
KINDS = {
    "settings": lambda i: RawClient.settings(),
    "ping": lambda i: RawClient.ping(),
    "priority": lambda i: RawClient.priority(1),
    "window-update": lambda i: RawClient.window_update(0, 1),
    "window-update-closed-stream": lambda i: RawClient.window_update(5, 1),
    "empty-data": lambda i: RawClient.data(3, b""),
    "empty-headers": empty_headers,
}
ZTTP_SILENT = {"priority", "window-update-closed-stream", "empty-data"}  # see test_h2_floods.py
# Streams the codec refuses count toward the budget, but both codecs end a flood of new streams
# first themselves (zttp: "flood detected"; the h2 adapter: more than twice the concurrent-stream
# limit open at once), with the same GOAWAY and a connection-error line.
CODEC_ENDS_IT = {"empty-headers"}
CALM_LINES = ("frames without progress", "(code 11)")


class FrameReader(threading.Thread):
    """Reads everything the server sends, keeps only the GOAWAY error codes."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.goaways: list[int] = []
        self.closed = threading.Event()

    def run(self) -> None:
        buffer = b""
        try:
            while chunk := self.sock.recv(65536):
                buffer += chunk
                while len(buffer) >= 9:
                    length = int.from_bytes(buffer[:3], "big")
                    if len(buffer) < 9 + length:
                        break
                    if buffer[3] == 0x7:  # GOAWAY
                        self.goaways.append(int.from_bytes(buffer[13:17], "big"))
                    buffer = buffer[9 + length :]
        except OSError:
            pass
        self.closed.set()


def flood(port: int, kind: str, frames: int, ends: bool) -> FrameReader:
    """One flooding connection: up to `frames` frames of `kind`, sent while the server answers;
    then waits for the server to close it when it `ends` it."""
    raw = RawClient()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    reader = FrameReader(sock)
    reader.start()
    try:
        post = [(b":method", b"POST"), *get(b"/sleep?t=30")[1:]]
        sock.sendall(raw.preface() + raw.headers(1, get(b"/sleep?t=30")) + raw.headers(3, post, end_stream=False)
                     + raw.headers(5, get(b"/")))
        time.sleep(0.05)  # stream 5 answered: closed
        frame = KINDS[kind]
        same = b"".join(frame(i) for i in range(CHUNK))  # (only empty HEADERS differ: new streams)
        for start in range(0, frames, CHUNK):
            if reader.closed.is_set():
                break
            sock.sendall(b"".join(frame(i) for i in range(start, start + CHUNK)) if kind == "empty-headers" else same)
    except OSError:
        pass  # closed by the server while we were sending
    reader.closed.wait(2 if ends else 0.1)
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes the reader's recv()
    except OSError:
        pass
    sock.close()
    reader.join(2)
    return reader


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


@pytest.fixture(scope="module", params=CODECS)
def server(request):
    from .helpers import ServerProcess

    # Each flooding connection leaves an app sleeping 30 s (stream 1) after its client is gone:
    # the stop waits for such apps at most this long, then cancels them.
    with ServerProcess("apps.basic:app", "--http2-codec", request.param, "--timeout-graceful-shutdown", "1") as started:
        started.codec = request.param
        yield started


@pytest.mark.parametrize("kind", list(KINDS))
def test_flood_of_frames_without_progress(server, kind):
    first_line = len(server.lines)
    before = rss_kib(server.proc.pid)
    silent = server.codec == "zttp" and kind in ZTTP_SILENT
    readers: list[FrameReader] = []

    def flooding() -> None:
        deadline = time.monotonic() + FLOOD_SECONDS
        while time.monotonic() < deadline:
            readers.append(flood(server.port, kind, 50_000 if silent else 5_000, not silent))

    cpu_before = cpu_seconds(server.proc.pid)
    attacker = threading.Thread(target=flooding)
    attacker.start()
    time.sleep(0.2)
    with httpx.Client(http1=False, http2=True, timeout=5) as client:  # served meanwhile
        started = time.monotonic()
        response = client.get(server.url + "/")
        assert response.status_code == 200 and response.http_version == "HTTP/2"
        assert time.monotonic() - started < 3  # generous: it is not starved
    attacker.join(30)
    cpu_used = cpu_seconds(server.proc.pid) - cpu_before

    assert readers
    lines = [line for line in server.lines[first_line:] if any(calm in line for calm in CALM_LINES)]
    if silent:  # zttp handles these without reporting them: served, at a bounded cost
        assert all(not r.goaways for r in readers) and not lines
        assert cpu_used < len(readers), f"{cpu_used:.2f} s of CPU for {len(readers)} floods of 50k frames"
        print(f"{cpu_used:.2f} s of CPU for {len(readers)} floods of 50k frames")
    else:
        assert all(r.goaways == [ENHANCE_YOUR_CALM] for r in readers), [r.goaways for r in readers]
        time.sleep(0.2)  # the last log line
        lines = [line for line in server.lines[first_line:] if any(calm in line for calm in CALM_LINES)]
        assert len(lines) == len(readers)  # one line per connection
        if kind not in CODEC_ENDS_IT:
            assert all("frames without progress" in line for line in lines)
    assert "Traceback" not in server.output
    assert rss_kib(server.proc.pid) - before < 64 * 1024
