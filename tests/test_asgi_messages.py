"""Invalid ASGI messages from an app: a 500 (or a closed connection once the head is out), one log
line, never a silent connection; and the small conformance points of the ASGI HTTP spec."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from .apps.careless import INVALID
from .helpers import ServerProcess, http_get, read_until_closed, status_of


@pytest.fixture(scope="module")
def careless_server(module_impl):
    http, loop = module_impl
    server = ServerProcess("apps.careless:app", "--http", http, "--loop", loop)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("kind", list(INVALID))
def test_invalid_message_gets_500_or_close_and_one_log_line(careless_server, kind):
    first_line = len(careless_server.lines)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", careless_server.port), timeout=10) as sock:
        sock.sendall(b"GET /invalid?kind=%s HTTP/1.1\r\nHost: x\r\n\r\n" % kind.encode())
        response = read_until_closed(sock, timeout=10)  # returns at the server's close
    assert time.monotonic() - started < 5, "the connection was left open"
    if kind == "streamed-then-str":
        # The head and a first chunk are out: the response is cut short, the connection closed.
        assert status_of(response) == 200 and not response.endswith(b"0\r\n\r\n"), response
    else:
        assert status_of(response) == 500, response
    careless_server.wait_for_line("Invalid response from the ASGI app", start=first_line)
    time.sleep(0.1)  # a second line, if any, would come right behind the first
    logged = [line for line in careless_server.lines[first_line:] if ' - "' not in line]  # (access log aside)
    assert len(logged) == 1, logged
    assert http_get(careless_server.url + "/").text == "ok"  # everyone else is still served


def test_status_that_is_not_an_int_raises_in_the_app(careless_server):
    # The app catches the error and answers properly: the cycle was left as it was.
    r = http_get(careless_server.url + "/status-type")
    assert r.status_code == 200 and r.text == "raised InvalidResponse"


def test_scope_asgi_is_not_shared_between_requests(careless_server):
    # The app writes to scope["asgi"] and reports whether an earlier request's write shows.
    with httpx.Client() as client:  # one connection
        assert [client.get(careless_server.url + "/asgi-scope").text for _ in range(3)] == ["clean"] * 3
    assert http_get(careless_server.url + "/asgi-scope").text == "clean"  # another connection
