"""HTTP/2 attacks against a real fastserve, on both codecs: each gets a GOAWAY or RST_STREAM with
the right code (or a close on time), one log line and no traceback, within bounded memory, and
the server goes on serving a normal client.

Raw sockets carry the frames (tests/h2_client.py's RawClient builds them); curl is the normal
client afterwards.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import hpack
import pytest
from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from .h2_client import GET, RawClient, codecs, parse_frames
from .helpers import BatchSender

CODECS = ["zttp" if c.__name__ == "ZttpCodec" else "h2" for c in codecs()]
APP = "apps.basic:app"
CANCEL, PROTOCOL_ERROR, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x8, 0x1, 0x7, 0xB


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def get(path: bytes) -> list:
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":path", path), (b":authority", b"x")]


def exchange(port: int, data: bytes, wait: float = 2.0) -> tuple[bytes, bool]:
    """Send `data`, read until the server closes or `wait` passes: (what came, closed)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server closed while we were still sending: read what it said
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            except OSError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
    return received, False


def goaway_code(data: bytes) -> int | None:
    codes = [f.error_code for f in parse_frames(data) if isinstance(f, GoAwayFrame)]
    return codes[-1] if codes else None


def resets(data: bytes) -> dict[int, int]:
    return {f.stream_id: f.error_code for f in parse_frames(data) if isinstance(f, RstStreamFrame)}


def still_serves(server, app_may_fail: bool = False) -> None:
    """A normal client is answered (generously timed: on the h2 codec the attack's buffered frames
    cost ~16 µs each and the machine may be busy with other tests; a hung server still fails)."""
    curl = shutil.which("curl")
    if curl is not None:
        result = subprocess.run([curl, "-sS", "--max-time", "20", "--http2-prior-knowledge", server.url + "/"],
                                capture_output=True, timeout=30)
        assert result.stdout == b"Hello, world!", result
    if not app_may_fail:
        assert "Traceback" not in server.output


@pytest.mark.parametrize("codec", CODECS)
def test_rapid_reset(serve, codec):
    server = serve(APP, "--http2-codec", codec, "--http2-max-resets", "100")
    raw = RawClient()
    wire = raw.preface() + b"".join(
        raw.headers(2 * i + 1, get(b"/sleep?t=5")) + raw.rst(2 * i + 1, CANCEL) for i in range(300)
    )
    received, closed = exchange(server.port, wire)
    assert goaway_code(received) == ENHANCE_YOUR_CALM and closed
    # Ours ("reset more than 100 streams"), or zttp's own flood detection, whichever comes first.
    for _ in range(100):
        if "(ENHANCE_YOUR_CALM)" in server.output or "(code 11)" in server.output:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no rapid-reset log line:\n{server.output}")
    still_serves(server)


@pytest.mark.parametrize("codec", CODECS)
def test_continuation_flood(serve, codec):
    server = serve(APP, "--http2-codec", codec)
    raw = RawClient()
    wire = raw.preface() + raw.headers(1, GET, end_headers=False) + raw.continuation(1, b"\x00" * 100) * 20_000
    received, closed = exchange(server.port, wire)
    assert goaway_code(received) in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM, 0x9) and closed
    server.wait_for_line("HTTP/2 connection error from")
    still_serves(server)


@pytest.mark.parametrize("codec", CODECS)
def test_header_list_over_the_limit(serve, codec):
    server = serve(APP, "--http2-codec", codec)
    raw = RawClient()
    fields = [*GET, *((b"x-big-%d" % i, b"v" * 4000) for i in range(40))]  # 160 kB > 64 KiB
    received, _ = exchange(server.port, raw.preface() + raw.headers(1, fields))
    frames = parse_frames(received)
    assert not any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in frames)  # never answered
    assert goaway_code(received) is not None or 1 in resets(received)
    still_serves(server)


@pytest.mark.parametrize("codec", CODECS)
def test_too_many_concurrent_streams(serve, codec):
    server = serve(APP, "--http2-codec", codec, "--http2-max-concurrent-streams", "128")
    raw = RawClient()
    wire = raw.preface() + b"".join(raw.headers(2 * i + 1, get(b"/sleep?t=3")) for i in range(140))
    received, _ = exchange(server.port, wire, wait=1.0)
    refused = [sid for sid, code in resets(received).items() if code == REFUSED_STREAM]
    assert len(refused) == 12 and min(refused) == 2 * 128 + 1
    still_serves(server)


@pytest.mark.parametrize("codec", CODECS)
def test_ping_flood_from_a_client_that_does_not_read(serve, codec):
    """Every PING is answered; a client that never reads the answers stops being read, so the
    server's memory stays bounded. (The budget of frames without progress is lifted here: by
    default the flood ends at 1000 PINGs, see tests/test_h2_floods_live.py; this is the bound
    on the ACK backlog when it does not.)"""
    server = serve(APP, "--http2-codec", codec, "--http2-max-control-frames", "1000000000")
    before = rss_kib(server.proc.pid)
    raw = RawClient()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(raw.preface())
        sock.setblocking(False)
        pings = BatchSender(sock, raw.ping() * 1000)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and pings.sent < 200_000_000:
            try:
                pings.send()
            except BlockingIOError:
                time.sleep(0.01)
            except ConnectionResetError:
                pytest.fail(f"reset after {pings.sent} bytes; the server's last lines: {server.lines[-10:]}")
        grown = rss_kib(server.proc.pid) - before
        assert grown < 64 * 1024, f"RSS grew {grown} KiB"
        still_serves(server)


@pytest.mark.parametrize("codec", CODECS)
def test_zero_window_slow_read(serve, codec):
    server = serve(APP, "--http2-codec", codec, "--http2-timeout-window", "1")
    raw = RawClient()
    settings = SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}).serialize()
    wire = raw.preface() + settings + raw.headers(1, get(b"/big?size=1000000"))
    received, _ = exchange(server.port, wire, wait=3)
    assert resets(received).get(1) == CANCEL
    server.wait_for_line("flow-control window stayed closed")
    still_serves(server)


@pytest.mark.parametrize("codec", CODECS)
def test_a_client_that_reads_nothing_is_aborted_after_the_write_timeout(serve, codec):
    """Windows wide open, then not a byte read: the transport stays paused (no stream waits for
    window, so --http2-timeout-window never fires) until --timeout-write drops the connection."""
    server = serve(APP, "--http2-codec", codec, "--timeout-write", "1")
    raw = RawClient()
    wide = SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1}).serialize()
    wire = raw.preface() + wide + raw.window_update(0, 2**31 - 1 - 65535) + raw.headers(1, get(b"/big?size=8000000"))
    start = len(server.lines)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(wire)
        line = server.wait_for_line("(--timeout-write)", timeout=10, start=start)
        assert "HTTP/2 connection" in line and "its last responses were waiting to be read" in line
        sock.settimeout(10)
        try:
            while sock.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
    assert sum("(--timeout-write)" in text for text in server.lines[start:]) == 1
    still_serves(server)


@pytest.mark.parametrize("codec", CODECS)
def test_preface_that_never_completes(serve, codec):
    """The preface, then half a SETTINGS frame header, then silence: closed on the keep-alive
    timeout. (A preface cut before its last line is still HTTP/1.1's: llhttp waits for the rest
    of it as a request head, and --timeout-request-header answers 408.)"""
    server = serve(APP, "--http2-codec", codec, "--timeout-keep-alive", "1")
    started = time.monotonic()
    _, closed = exchange(server.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00", wait=4)
    assert closed and time.monotonic() - started < 3.5
    still_serves(server)


@pytest.mark.parametrize("codec", CODECS)
def test_stream_that_never_sends_its_body(serve, codec):
    server = serve(APP, "--http2-codec", codec, "--timeout-request-body", "1")
    raw = RawClient()
    wire = raw.preface() + raw.headers(1, [(b":method", b"POST"), *get(b"/echo")[1:]], end_stream=False)
    received, _ = exchange(server.port, wire, wait=2.5)
    answers = [f for f in parse_frames(received) if isinstance(f, HeadersFrame) and f.stream_id == 1]
    assert answers and (b":status", b"408") in hpack.Decoder().decode(answers[0].data, raw=True)
    assert resets(received).get(1) == 0  # NO_ERROR: the rest of the body is not wanted
    server.wait_for_line("with 408: Request body timeout")
    still_serves(server, app_may_fail=True)  # (the test app raises on http.disconnect)
