"""Hostile and careless clients and apps against a real server: the ASGI flush rule, connections
that race a shutdown, running out of file descriptors, a flapping --limit-connections."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

import httpx
import pytest

from .helpers import TESTS, read_until_closed


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_streamed_chunk_reaches_client_before_send_returns(serve, impl, framing, tmp_path):
    """ASGI: send() flushes to the transport before it returns, so a chunk sent with more_body
    reaches the client even when the app then blocks the event loop."""
    http, loop = impl
    server = serve("apps.hostile:app", "--http", http, "--loop", loop)
    marker = tmp_path / "got-first-chunk"
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(b"GET /blocking-stream?framing=%s&marker=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                     % (framing.encode(), str(marker).encode()))
        received = b""
        while b"first\n" not in received:
            data = sock.recv(65536)
            assert data, received
            received += data
        marker.touch()  # the app, blocked since the chunk, now finishes the response
        received += read_until_closed(sock, 15)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"released\n" in received and b"timeout!" not in received


def _response_head(sock: socket.socket) -> bytes:
    """Read one response to GET / (body "Hello, world!") and return its head."""
    received = b""
    while not received.endswith(b"Hello, world!"):
        data = sock.recv(65536)
        assert data, received
        received += data
    return received.partition(b"\r\n\r\n")[0].lower()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_connection_accepted_with_the_signal_is_shut_down(serve, loop):
    """A connection accepted in the loop step that handles SIGTERM registers after the shutdown
    told every connection to close: it is told too, not served keep-alive until the graceful
    timeout (10 s here; it took that long before the fix, on asyncio every time)."""
    for http in ("httptools", "h11"):
        server = serve("apps.hostile:app", "--http", http, "--loop", loop,
                       "--timeout-graceful-shutdown", "10", "--timeout-keep-alive", "30")
        in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        in_flight.sendall(b"GET /sleep?t=1 HTTP/1.1\r\nHost: x\r\n\r\n")  # the shutdown waits for it
        blocker = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        blocker.sendall(b"GET /block?t=0.4 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.15)  # the loop is blocked: the signal, then a connection, are both waiting for it
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        late = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        late.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = _response_head(late)
        if loop == "asyncio":
            # uvloop runs the request before the signal handler, as if it came first: then it is
            # answered keep-alive and the connection closed right after (checked below).
            assert b"connection: close" in head
        assert read_until_closed(late, 5) == b""
        assert time.monotonic() - started < 3
        assert server.proc.wait(8) == 0
        assert time.monotonic() - started < 5
        for sock in (in_flight, blocker, late):
            sock.close()


# Run fastserve with a low open-file limit: RLIMIT_NOFILE is set before the server starts.
_LOW_NOFILE = (
    "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)); "
    "sys.argv[0] = 'fastserve'; runpy.run_module('fastserve', run_name='__main__')"
)


def _warnings_and_errors(server) -> list[str]:
    return [line for line in server.lines if not line.startswith("INFO:")]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_files_pauses_accepting_with_one_log_line(serve, loop):
    """At the open-file limit asyncio logged a traceback per failed accept (hundreds of thousands
    of lines); uvloop closed the waiting connections. Accepting pauses near the limit instead,
    with a line or two in the log, and resumes once connections close."""
    command = [sys.executable, "-c", _LOW_NOFILE, "apps.hostile:app", "--loop", loop,
               "--port", "0", "--app-dir", str(TESTS)]
    server = serve("apps.hostile:app", command=command)
    clients = []
    for _ in range(100):  # far past 64 files; the kernel queues them in the backlog
        clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
    for sock in clients[:3]:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response_head(sock).startswith(b"http/1.1 200 ")
    time.sleep(1.5)  # asyncio retries a failed accept after 1 s
    problems = _warnings_and_errors(server)
    assert 1 <= len(problems) <= 3, "\n".join(problems)
    assert not any("Traceback" in line for line in server.lines)
    for sock in clients:
        sock.close()
    assert httpx.get(server.url, timeout=10).text == "Hello, world!"
    assert len(_warnings_and_errors(server)) <= 3, server.output


def test_flapping_connection_limit_is_logged_at_most_twice(serve):
    """--limit-connections pauses and resumes accepting as connections come and go; under a
    flapping load that is a change every few milliseconds, logged at most twice per 10 s."""
    server = serve("apps.hostile:app", "--limit-connections", "2")
    stop = threading.Event()
    served = []

    def client():
        # A new connection for every request (building a new client each time would spend most of
        # the 2 s setting up TLS contexts instead of flapping the limit).
        with httpx.Client(base_url=server.url, timeout=10, headers={"connection": "close"}) as session:
            while not stop.is_set():
                served.append(session.get("/").status_code)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join(15)
    assert len(served) > 20 and set(served) == {200}
    state_lines = [line for line in server.lines if "accepting" in line]
    assert 1 <= len(state_lines) <= 2, "\n".join(state_lines)
    assert "Connection limit of 2 reached; not accepting new connections." in state_lines[0]


def test_rate_limited_log_sums_up_a_flapping_state(monkeypatch, caplog):
    """The state log's own rules, in process: two lines at once, then one line once the interval
    is up, with the latest state and how many changes it did not log."""
    import asyncio
    import logging

    from fastserve import server as server_module

    monkeypatch.setattr(server_module, "STATE_LOG_INTERVAL", 0.3)
    log = logging.getLogger("test.flapping")

    async def flap():
        states = server_module.RateLimitedLog(log, burst=2)
        for i in range(10):
            states.log(logging.INFO, "paused" if i % 2 == 0 else "accepting")
        await asyncio.sleep(0.5)
        states.close()

    with caplog.at_level(logging.INFO, logger="test.flapping"):
        asyncio.run(flap())
    assert [r.getMessage() for r in caplog.records] == [
        "paused", "accepting", "accepting (8 more times in the last 0.3 s)"]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_request_right_after_shutdown_on_an_idle_keep_alive_connection_is_answered(serve, loop):
    """At shutdown an idle keep-alive connection is closed only once quiet for a moment, so a
    client's next request, sent as the server stops, is answered (with connection: close) rather
    than failed by a close racing it."""
    server = serve("apps.hostile:app", "--loop", loop)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"connection: close" not in _response_head(sock)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)  # the server has begun its shutdown; the client knows nothing of it
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"connection: close" in _response_head(sock)
        assert read_until_closed(sock, 5) == b""
    assert server.proc.wait(5) == 0


def test_keep_alive_clients_see_no_failure_while_workers_roll_over(supervised):
    """SIGHUP under keep-alive load: each retiring worker answers with connection: close and closes
    idle connections only once quiet, so clients hammering on kept-alive connections see no error."""
    server = supervised("apps.workerapp:app", "--workers", "2")
    server.wait_for_line("is serving", timeout=30)
    stop = threading.Event()
    lock = threading.Lock()
    ok, closes, errors = [0], [0], []

    def client():
        with httpx.Client(base_url=server.url, timeout=10) as session:
            while not stop.is_set():
                try:
                    response = session.get("/pid")
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    ok[0] += 1
                    closes[0] += response.headers.get("connection") == "close"

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(2):
            start = len(server.lines)
            os.kill(server.proc.pid, signal.SIGHUP)
            server.wait_for_line("Roll-over complete", timeout=30, start=start)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert errors == [], errors[:5]
    assert ok[0] > 100 and closes[0] >= 1  # retiring workers told their clients


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_websocket_upgrade_after_shutdown_began_is_refused(serve, http):
    """A connection accepted before the stop may still send its first request: an upgrade then
    gets the shutdown's 503, not a WebSocket the shutdown never hears of (which held the stop for
    the whole graceful timeout)."""
    server = serve("apps.ws:app", "--http", http, "--timeout-graceful-shutdown", "10")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        time.sleep(0.2)  # accepted and registered
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        sock.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert read_until_closed(sock, 5).startswith(b"HTTP/1.1 503 ")
    assert server.proc.wait(8) == 0
    assert time.monotonic() - started < 5
