"""--health-path and --shutdown-delay: a load balancer's drain against a real server."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from .helpers import raw_request, read_until_closed, status_of


def get(port: int, path: str = "/", method: str = "GET") -> bytes:
    return raw_request(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), timeout=5)


def test_health_path_is_answered_by_the_server_with_keep_alive(serve, impl):
    http, loop = impl
    server = serve("apps.ops:app", "--http", http, "--loop", loop, "--health-path", "/healthz")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        # Pipelined on one connection: health, the app, a HEAD of health; all answered in order.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"HEAD /healthz?probe=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_until_closed(sock, 5)
    responses = data.split(b"HTTP/1.1 ")[1:]
    assert [r[:3] for r in responses] == [b"200", b"200", b"200"], data
    assert responses[0].endswith(b"\r\n\r\nOK\n") and b"connection: close" not in responses[0]
    assert responses[1].endswith(b"hello")
    assert responses[2].endswith(b"\r\n\r\n") and b"content-length: 3" in responses[2]
    assert status_of(get(server.port, "/healthz/other")) == 404  # only the exact path; the app has the rest


def test_sigterm_with_shutdown_delay_drains_like_a_load_balancer_expects(serve):
    server = serve("apps.ops:app", "--health-path", "/healthz", "--shutdown-delay", "2")
    assert status_of(get(server.port, "/healthz")) == 200
    held = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # a keep-alive client
    held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert held.recv(4096).startswith(b"HTTP/1.1 200")
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for_line("--shutdown-delay", timeout=5)
    assert status_of(get(server.port, "/healthz")) == 503  # readiness is 503 at once...
    served = 0
    while time.monotonic() - signalled < 1.5:  # ...while requests keep succeeding
        assert status_of(get(server.port, "/")) == 200
        held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held.recv(4096).startswith(b"HTTP/1.1 200")
        served += 1
        time.sleep(0.1)
    assert served >= 5
    assert server.proc.wait(10) == 0  # then a clean exit
    elapsed = time.monotonic() - signalled
    assert 1.8 <= elapsed < 8, elapsed
    held.close()
    lines = server.output
    assert lines.index("--shutdown-delay") < lines.index("Shutting down") and "Traceback" not in lines


def test_workers_drain_with_shutdown_delay(supervised):
    from .test_workers import wait_for_workers

    server = supervised("apps.ops:app", "--workers", "2", "--health-path", "/healthz", "--shutdown-delay", "1.5")
    wait_for_workers(server, 2)
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    first = server.wait_for_line("--shutdown-delay", timeout=5)
    # Both workers have begun (each logs it): until then the other one's health path still says 200.
    server.wait_for_line("--shutdown-delay", timeout=5, start=server.lines.index(first) + 1)
    statuses = set()
    while time.monotonic() - signalled < 1.0:
        statuses.add(status_of(get(server.port, "/healthz")))
        assert status_of(get(server.port, "/")) == 200
        time.sleep(0.05)
    assert statuses == {503}
    assert server.proc.wait(15) == 0 and time.monotonic() - signalled >= 1.4


def test_limit_max_requests_exit_skips_the_shutdown_delay(serve):
    # Nobody drains a worker rolled over by --limit-max-requests: it stops at once.
    server = serve("apps.ops:app", "--shutdown-delay", "30", "--limit-max-requests", "1")
    assert status_of(get(server.port, "/")) == 200
    assert server.proc.wait(10) == 0
    assert "--shutdown-delay" not in server.output


@pytest.mark.parametrize("args, message", [
    (("--health-path", "healthz"), "--health-path: must start with /"),
    (("--shutdown-delay", "-1"), "--shutdown-delay: must not be negative"),
])
def test_options_are_validated(args, message):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "fastserve", "apps.ops:app", *args], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr, result.stderr
