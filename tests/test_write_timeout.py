"""--timeout-write: a client that stops reading cannot hold its connection for ever (issue #18).

A real server with ``--timeout-write 1`` and raw clients with a small receive buffer that never
read: a streamed body, a file sent with pathsend (Starlette's FileResponse: sendfile, which never
pauses the transport), a WebSocket the app keeps sending to. Each connection is aborted after
about a second of no progress, with one log line and no traceback; the app's pending send()
raises ClientDisconnected; the server's descriptor count is back; a normal client is served
meanwhile. Bounds are generous (seconds), never tight timings.
"""

from __future__ import annotations

import os
import socket
import ssl
import time

import pytest

from .helpers import ServerProcess, http_get, tls_certificate
from .wsclient import handshake_request

APP = "apps.stalled_readers:app"
TIMEOUT_LINE = "(--timeout-write)"
FILE_SIZE = 64 * 1024 * 1024  # sparse: far more than the kernel's socket buffers on loopback


@pytest.fixture(scope="module")
def server(module_impl):
    http, loop = module_impl
    server = ServerProcess(APP, "--http", http, "--loop", loop, "--timeout-write", "1")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "big.bin"
    with open(path, "wb") as file:
        file.truncate(FILE_SIZE)
    return str(path)


@pytest.fixture(scope="module")
def tls_server(module_impl, tmp_path_factory):
    """The same server over TLS: a file is read and written through the transport (no sendfile),
    so writing pauses as for a streamed body."""
    key, chain, context = tls_certificate(tmp_path_factory.mktemp("tls"))
    http, loop = module_impl
    server = ServerProcess(APP, "--http", http, "--loop", loop, "--timeout-write", "1",
                           "--ssl-keyfile", key, "--ssl-certfile", chain)
    server.start()
    server.client_context = context
    yield server
    server.stop()


def stalled_client(port: int, request: bytes, receive_buffer: int = 4096) -> socket.socket:
    """Connects with a small receive buffer, sends ``request``, and (unless the test does) never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Reads what the server had sent: True if the connection then ends (EOF or reset)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(1 << 20):
                return True
    except (ConnectionResetError, ssl.SSLError):  # (TLS: the close_notify never came)
        return True
    except TimeoutError:
        return False
    return False


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for_fds(pid: int, at_most: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := open_fds(pid)) > at_most and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def assert_aborted_once(server: ServerProcess, sock: socket.socket, start: int, what: str, app_line: str) -> None:
    """The stalled connection is aborted within a generous bound, with one log line naming the
    client and what was in progress; the app hears ClientDisconnected; no traceback."""
    peer = f"127.0.0.1:{sock.getsockname()[1]}"
    line = server.wait_for_line(TIMEOUT_LINE, timeout=10, start=start)
    assert peer in line and what in line, line
    assert closed_by_server(sock, timeout=10), "the connection was not closed"
    server.wait_for_line(app_line, timeout=10, start=start)
    lines = server.lines[start:]
    assert sum(TIMEOUT_LINE in text for text in lines) == 1, "\n".join(lines)
    assert not any("Traceback" in text for text in lines), "\n".join(lines)


def check_stalled(server: ServerProcess, request: bytes, what: str, app_line: str) -> None:
    start = len(server.lines)
    fds = open_fds(server.proc.pid)
    sock = stalled_client(server.port, request)
    try:
        began = time.monotonic()
        assert http_get(server.url + "/hello", timeout=5).text == "hello"  # served meanwhile
        assert_aborted_once(server, sock, start, what, app_line)
        assert time.monotonic() - began < 15
    finally:
        sock.close()
    assert wait_for_fds(server.proc.pid, fds) <= fds  # the connection's socket (and the file) closed
    assert http_get(server.url + "/hello", timeout=5).text == "hello"


@pytest.mark.two_impls
def test_streamed_body_to_a_client_that_stops_reading(server):
    check_stalled(server, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
                  "the response to GET /stream", "app: stream send raised ClientDisconnected")


@pytest.mark.two_impls
def test_file_response_to_a_client_that_stops_reading(server, big_file):
    """Starlette's FileResponse uses pathsend: os.sendfile on the socket, which never pauses the
    transport: the timer runs while the transfer waits for the socket to take more."""
    check_stalled(server, b"GET /file?path=%s HTTP/1.1\r\nHost: x\r\n\r\n" % big_file.encode(),
                  "the response to GET /file", "app: file send raised ClientDisconnected")


@pytest.mark.two_impls
def test_file_over_tls_to_a_client_that_stops_reading(tls_server, big_file):
    server = tls_server
    start = len(server.lines)
    fds = open_fds(server.proc.pid)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock = server.client_context.wrap_socket(sock, server_hostname="127.0.0.1")
    try:
        sock.sendall(b"GET /file?path=%s HTTP/1.1\r\nHost: x\r\n\r\n" % big_file.encode())
        assert http_get(server.url + "/hello", timeout=5, verify=server.client_context).text == "hello"
        assert_aborted_once(server, sock, start, "the response to GET /file", "app: file send raised ClientDisconnected")
    finally:
        sock.close()
    assert wait_for_fds(server.proc.pid, fds) <= fds


@pytest.mark.two_impls
def test_websocket_messages_to_a_client_that_stops_reading(server):
    check_stalled(server, handshake_request("/push"), "WebSocket messages were being sent",
                  "app: websocket send raised ClientDisconnected")


@pytest.mark.two_impls
def test_a_slow_reader_is_not_aborted(server):
    """A client that reads, slowly, one body message far larger than the buffers: the transport
    holds it all and stays paused for longer than --timeout-write, but its buffer shrinks, so the
    connection lives (nginx's send_timeout: between two successful writes, not in all)."""
    start = len(server.lines)
    size = 12 * 1024 * 1024
    sock = stalled_client(server.port, b"GET /big?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size, 64 * 1024)
    try:
        sock.settimeout(5)
        began = time.monotonic()
        received = 0
        while received < size + 50:  # (the head's size is not known: at least the body)
            chunk = sock.recv(64 * 1024)
            assert chunk, "closed while the client was reading"
            received += len(chunk)
            time.sleep(0.01)  # at most ~6 MB/s: the server's buffers stay full for seconds
        assert time.monotonic() - began > 1.5  # paused for longer than --timeout-write
    finally:
        sock.close()
    assert not any(TIMEOUT_LINE in text for text in server.lines[start:]), "\n".join(server.lines[start:])


@pytest.mark.two_impls
def test_a_slow_reader_of_a_stream_is_not_aborted(server):
    """A client reading a stream slowly: on loopback the kernel's send queue holds megabytes, and
    the socket takes nothing more until a good part of it is read, longer than --timeout-write
    here; the send queue shrinking counts as progress (SIOCOUTQ), so the connection lives."""
    start = len(server.lines)
    sock = stalled_client(server.port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        sock.settimeout(5)
        deadline = time.monotonic() + 3  # three times --timeout-write
        while time.monotonic() < deadline:
            assert sock.recv(16 * 1024), "closed while the client was reading"
            time.sleep(0.02)  # a few KiB per read (the receive buffer is small): ~200 KB/s
    finally:
        sock.close()
    assert not any(TIMEOUT_LINE in text for text in server.lines[start:]), "\n".join(server.lines[start:])
