"""Hostile and careless HTTP/1.1 clients, against a real server on both parsers and both loops:
pipelining floods (answered in order, without a traceback, without starving other clients),
floods behind a request the app is slow with (memory stays bounded), and the types of what the
app receives."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from .helpers import BatchSender, ServerProcess

APP = "apps.hostile_http:app"
RESPONSE_HEAD = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n(?:[^\r]+\r\n)*?content-length: (\d+)\r\n(?:[^\r]+\r\n)*\r\n", re.IGNORECASE)


def start(serve, impl, *args: str) -> ServerProcess:
    http, loop = impl
    return serve(APP, "--http", http, "--loop", loop, "--lifespan", "off", *args)


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each complete response in data, in order."""
    found = []
    pos = 0
    while True:
        match = RESPONSE_HEAD.match(data, pos)
        if match is None:
            return found
        end = match.end() + int(match.group(2))
        if end > len(data):
            return found
        found.append((int(match.group(1)), data[match.end():end]))
        pos = end


def read_responses(sock: socket.socket, count: int, timeout: float) -> list[tuple[int, bytes]]:
    """Read until count responses have arrived (or the server closes, or the timeout)."""
    sock.settimeout(timeout)
    chunks = []
    heads = 0
    deadline = time.monotonic() + timeout
    while heads < count and time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
        heads += chunk.count(b"HTTP/1.1 ")  # cheap progress count; parsed properly below
    return responses(b"".join(chunks))


def assert_clean_log(server: ServerProcess) -> None:
    log = server.output
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


# -- 1. a pipelining flood in one send ------------------------------------------------------------
@pytest.mark.parametrize("every_nth_yields", [0, 3], ids=["app-answers-at-once", "some-answers-wait"])
def test_pipelined_flood_in_one_send_is_answered_in_order(serve, impl, every_nth_yields):
    """1,500 pipelined GETs in one send: every one answered, in order, and no traceback (h11 used
    to recurse once per request and die at the recursion limit, after 324 responses)."""
    server = start(serve, impl)
    count = 1500
    queries = [b"%d" % i + (b"&yield" if every_nth_yields and i % every_nth_yields == 0 else b"") for i in range(count)]
    burst = b"".join(b"GET /n?%s HTTP/1.1\r\nHost: x\r\n\r\n" % q for q in queries)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(burst)
        answers = read_responses(sock, count, timeout=20)
    assert len(answers) == count, f"{len(answers)} of {count} answered\n{server.output[-3000:]}"
    assert [body for _, body in answers] == queries
    assert {status for status, _ in answers} == {200}
    assert_clean_log(server)


def test_pipelined_requests_with_bodies_in_one_send_are_answered_in_order(serve, impl):
    """Bodies (Content-Length and chunked, some holding CRLF CRLF, some large) between pipelined
    GETs, all in one send: the server feeds a large read a share of request heads at a time, and
    a share may end inside a body; every body still reaches its request, in order."""
    server = start(serve, impl)
    requests, expected = [], []
    for i in range(300):
        body = (b"%d\r\n\r\n" % i) * (1 + (i % 7) * (i % 5) * 40)
        if i % 3 == 0:
            requests.append(b"GET /n?%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            expected.append(b"%d" % i)
        elif i % 3 == 1:
            requests.append(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            expected.append(body)
        else:
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:5], body[5:]) if p)
            requests.append(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % chunks)
            expected.append(body)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"".join(requests))
        answers = read_responses(sock, len(requests), timeout=20)
    assert [body for _, body in answers] == expected
    assert_clean_log(server)


@pytest.mark.parametrize("yields", [False, True], ids=["answered-at-once", "answered-from-a-task"])
def test_websocket_upgrade_at_the_end_of_a_pipelined_burst_gets_the_frames_after_it(serve, impl, yields):
    """63 pipelined GETs, an upgrade and two WebSocket frames in one send: the upgrade ends one
    of the shares a large read is fed in, so the frames are still unread when the connection
    becomes a WebSocket (or while the upgrade waits for the responses ahead): they must reach it."""
    from .wsclient import TEXT, frame, handshake_request

    server = start(serve, impl)
    count = 63
    gets = b"".join(b"GET /n?%d%s HTTP/1.1\r\nHost: x\r\n\r\n" % (i, b"&yield" if yields else b"") for i in range(count))
    frames = frame(TEXT, b"early one") + frame(TEXT, b"early two")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(gets + handshake_request("/ws") + frames)
        received = b""
        while b"early two" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"closed early: {received[-500:]!r}\n{server.output[-2000:]}"
            received += chunk
    http, _, websocket = received.partition(b"HTTP/1.1 101 ")
    assert len(responses(http)) == count
    assert websocket.index(b"early one") < websocket.index(b"early two")
    assert_clean_log(server)


# -- 2. request bodies are bytes ------------------------------------------------------------------
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_request_body_messages_are_bytes(serve, impl, framing):
    """ASGI says the body is bytes (h11 hands out bytearray): small and large, both framings."""
    server = start(serve, impl)
    for size in (5, 300_000):
        body = b"b" * size
        if framing == "chunked":
            framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (body[:size // 2], body[size // 2:]))
            head = b"POST /body-types HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            request = head + framed + b"0\r\n\r\n"
        else:
            request = b"POST /body-types HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (size, body)
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request)
            [(status, names)] = read_responses(sock, 1, timeout=10)
        assert status == 200
        assert set(names.split(b",")) == {b"bytes"}, names
    assert_clean_log(server)


# -- 3. a flood behind a request the app is slow with ---------------------------------------------
def test_pipelined_flood_behind_a_slow_reader_keeps_memory_bounded(serve, impl):
    """The app reads a 1 MiB body slowly, then keeps calling receive() for a second (taking the
    body used to resume reading, undoing the pause for the requests behind it; h11 held every
    byte after the request). The client floods pipelined requests meanwhile: the server must stop
    reading, so its memory stays flat and the client cannot push the whole flood."""
    server = start(serve, impl)
    pid = server.proc.pid
    with socket.create_connection(("127.0.0.1", server.port)) as warm:
        warm.sendall(b"GET /n?warm HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(warm, 1, timeout=5)[0][0] == 200
    rss_before = peak = rss_kib(pid)
    body = b"x" * (1 << 20)
    flood_piece = b"GET /n?flood HTTP/1.1\r\nHost: x\r\n\r\n" * (1 << 15)  # ~1.1 MiB of requests
    flood_limit = 64 << 20
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /slow?1.2 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        sock.setblocking(False)
        flood = BatchSender(sock, flood_piece)
        deadline = time.monotonic() + 1.0
        while flood.sent < flood_limit and time.monotonic() < deadline:
            try:
                flood.send()
            except BlockingIOError:
                time.sleep(0.01)
            peak = max(peak, rss_kib(pid))
        sock.setblocking(True)
        # The slow request is still answered, first (its body size), then the connection goes away.
        answers = read_responses(sock, 1, timeout=10)
        peak = max(peak, rss_kib(pid))
    growth = (peak - rss_before) / 1024
    print(f"\n{impl}: client pushed {flood.sent / 2**20:.1f} MiB of the flood; server RSS grew {growth:.1f} MiB")
    assert answers and answers[0] == (200, b"%d" % len(body)), answers[:1]
    assert growth < 40, f"server RSS grew by {growth:.1f} MiB while the client pushed {flood.sent / 2**20:.1f} MiB"
    assert flood.sent < flood_limit, "the server kept reading the whole flood"
    assert_clean_log(server)


# -- 4. fairness: a pipelining burst does not starve other clients --------------------------------
def test_pipelined_burst_does_not_starve_another_client(serve, impl):
    """One connection pipelines 10,000 requests in one burst while another client makes requests
    one at a time: that client's p99 latency stays low (asserted generously: 0.5 s; measured
    figures are printed), and the burst is still answered in full, in order."""
    server = start(serve, impl)
    count = 10_000
    burst = b"".join(b"GET /n?%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(count))
    attacker = socket.create_connection(("127.0.0.1", server.port))
    normal = socket.create_connection(("127.0.0.1", server.port))
    normal.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    result: list = []
    reader = threading.Thread(target=lambda: result.extend(read_responses(attacker, count, timeout=60)))
    try:
        normal.sendall(b"GET /n?hello HTTP/1.1\r\nHost: x\r\n\r\n")  # connected and served once
        read_responses(normal, 1, timeout=5)
        reader.start()
        threading.Thread(target=attacker.sendall, args=(burst,), daemon=True).start()
        latencies = []
        while reader.is_alive() or len(latencies) < 20:
            started = time.perf_counter()
            normal.sendall(b"GET /n?normal HTTP/1.1\r\nHost: x\r\n\r\n")
            [(status, _)] = read_responses(normal, 1, timeout=10)
            latencies.append(time.perf_counter() - started)
            assert status == 200
        reader.join()
    finally:
        attacker.close()
        normal.close()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(f"\n{impl}: normal client during a {count}-request burst: {len(latencies)} requests, "
          f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    assert len(result) == count, f"{len(result)} of {count} answered"
    assert [body for _, body in result] == [b"%d" % i for i in range(count)]
    assert p99 < 0.5, f"p99 {p99:.3f} s"
    assert_clean_log(server)
