"""--proxy-protocol: PROXY v1 and v2 headers from trusted peers, from a raw socket (and HAProxy)."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import time

import pytest

from .conftest import free_port
from .helpers import ServerProcess, raw_request, read_until_closed, status_of

GET_SCOPE = b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(source: str, source_port: int, destination: str, destination_port: int, tlvs: bytes = b"", local: bool = False) -> bytes:
    six = ":" in source
    family = socket.AF_INET6 if six else socket.AF_INET
    addresses = socket.inet_pton(family, source) + socket.inet_pton(family, destination) + struct.pack("!HH", source_port, destination_port)
    body = addresses + tlvs
    return V2_SIGNATURE + bytes([0x20 if local else 0x21, 0x21 if six else 0x11]) + struct.pack("!H", len(body)) + body


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


SSL_TLV = tlv(0x20, b"\x01" + b"\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client.example"))


def scope_through(port: int, data: bytes, pieces: int = 1) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            sock.sendall(data[i:i + step])
            if pieces > 1:
                time.sleep(0.01)
        response = read_until_closed(sock, 5)
    assert status_of(response) == 200, response
    return json.loads(response.partition(b"\r\n\r\n")[2])


@pytest.fixture(scope="module")
def server(module_impl):
    """One server per implementation for this module (tests read only the log lines they cause)."""
    http, loop = module_impl
    server = ServerProcess("apps.ops:app", "--http", http, "--loop", loop, "--proxy-protocol").start()
    yield server
    server.stop()


def test_v1_tcp4_and_tcp6(server):
    scope = scope_through(server.port, b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n" + GET_SCOPE)
    assert scope["client"] == ["203.0.113.7", 51234] and scope["server"] == ["192.0.2.1", 443]
    assert scope["scheme"] == "http" and scope["tls"] is None
    scope = scope_through(server.port, b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\n" + GET_SCOPE, pieces=7)
    assert scope["client"] == ["2001:db8::7", 40000]


def test_v1_unknown_keeps_the_connection_address(server):
    scope = scope_through(server.port, b"PROXY UNKNOWN\r\n" + GET_SCOPE)
    assert scope["client"][0] == "127.0.0.1"


def test_v2_with_tls_info_even_byte_by_byte(server):
    data = v2_header("198.51.100.9", 60000, "192.0.2.1", 443, SSL_TLV) + GET_SCOPE
    for pieces in (1, len(data)):
        scope = scope_through(server.port, data, pieces)
        assert scope["client"] == ["198.51.100.9", 60000] and scope["scheme"] == "https"
        assert scope["tls"]["tls_version"] == 0x0304 and scope["tls"]["client_cert_name"] == "CN=client.example"


def test_v2_ipv6_and_local(server):
    assert scope_through(server.port, v2_header("2001:db8::9", 1, "2001:db8::1", 2) + GET_SCOPE)["client"] == ["2001:db8::9", 1]
    scope = scope_through(server.port, v2_header("10.0.0.1", 1, "10.0.0.2", 2, local=True) + GET_SCOPE)
    assert scope["client"][0] == "127.0.0.1"  # LOCAL: the proxy's own health check


@pytest.mark.parametrize("data, problem", [
    (GET_SCOPE, "no PROXY protocol header"),
    (b"PROXY TCP4 999.1.1.1 192.0.2.1 1 2\r\n" + GET_SCOPE, "malformed v1 address or port"),
    (b"PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n" + GET_SCOPE, "malformed v1 header"),
    (b"PROXY TCP4 " + b"1" * 200, "longer than 107 bytes"),
    (V2_SIGNATURE + b"\x31\x11\x00\x00" + GET_SCOPE, "unsupported v2 version or command"),
    (V2_SIGNATURE[:11] + b"X" + b"\x21\x11\x00\x0c" + bytes(12), "malformed v2 signature"),
    (v2_header("10.0.0.1", 1, "10.0.0.2", 2, b"\x20\x00\x09abc") + GET_SCOPE, "truncated v2 TLV"),
])
def test_malformed_or_missing_header_closes_with_one_log_line(server, data, problem):
    before = len(server.lines)
    response = raw_request(server.port, data)
    assert response == b""  # closed, nothing answered: these bytes cannot be trusted as HTTP
    line = server.wait_for_line(problem, start=before)
    assert "PROXY protocol header expected" in line and "Traceback" not in server.output
    assert sum("PROXY protocol header expected" in x for x in server.lines[before:]) == 1
    assert scope_through(server.port, b"PROXY UNKNOWN\r\n" + GET_SCOPE)["client"][0] == "127.0.0.1"  # still serving


def test_untrusted_peers_are_plain_http(serve):
    server = serve("apps.ops:app", "--proxy-protocol", "--forwarded-allow-ips", "10.1.2.3")
    assert scope_through(server.port, GET_SCOPE)["client"][0] == "127.0.0.1"
    # A PROXY line from a peer that may not send one is not HTTP: 400, never a spoofed address.
    assert status_of(raw_request(server.port, b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n" + GET_SCOPE)) == 400


def test_header_that_never_completes_is_closed(serve):
    server = serve("apps.ops:app", "--proxy-protocol", "--timeout-keep-alive", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"PROXY TCP4 203.0")
        started = time.monotonic()
        assert read_until_closed(sock, 5) == b""
        assert time.monotonic() - started < 4


HAPROXY = shutil.which("haproxy")


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_behind_haproxy(serve, tmp_path, send_proxy):
    if HAPROXY is None:
        pytest.skip("SKIPPED LOUDLY: haproxy is not installed (apt-get install haproxy); raw-socket tests cover v1/v2")
    server = serve("apps.ops:app", "--proxy-protocol")
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\n"
        f"frontend web\n  bind 127.0.0.1:{front}\n  default_backend app\n"
        f"backend app\n  server s1 127.0.0.1:{server.port} {send_proxy}\n"
    )
    proc = subprocess.Popen([HAPROXY, "-f", str(config), "-db"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                response = raw_request(front, GET_SCOPE)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert status_of(response) == 200, response
        scope = json.loads(response.partition(b"\r\n\r\n")[2])
        assert scope["client"][0] == "127.0.0.1" and scope["server"] == ["127.0.0.1", front]
    finally:
        proc.terminate()
        proc.wait(5)


def test_gunicorn_proxy_protocol_setting(supervised):
    from .helpers import TESTS
    from .test_gunicorn import GUNICORN
    from .test_gunicorn import wait_for_workers as wait_for_gunicorn_workers

    # Gunicorn's default ("off") leaves plain HTTP alone...
    plain = supervised("ops:app", command=[GUNICORN, "-k", "fastserve.workers.Worker", "--no-control-socket", "--chdir",
                                            str(TESTS / "apps"), "-b", "127.0.0.1:0", "-w", "1", "ops:app"])
    wait_for_gunicorn_workers(plain, 1)
    assert status_of(raw_request(plain.port, GET_SCOPE)) == 200
    # ...and --proxy-protocol v2 turns fastserve's on.
    server = supervised("ops:app", command=[GUNICORN, "-k", "fastserve.workers.Worker", "--no-control-socket", "--chdir",
                                            str(TESTS / "apps"), "-b", "127.0.0.1:0", "-w", "1", "--proxy-protocol", "v2", "ops:app"])
    wait_for_gunicorn_workers(server, 1)
    assert scope_through(server.port, v2_header("198.51.100.9", 60000, "192.0.2.1", 443) + GET_SCOPE)["client"] == ["198.51.100.9", 60000]
