"""The ASGI WebSocket spec on a real server, on every parser x loop combination.

A ``websockets`` client talks to ``tests/apps/ws.py`` served by ``python -m fastserve``. The tests
taking `ws_target` also run over HTTP/2 (RFC 8441 extended CONNECT), once per HTTP/2 codec, through
the one blocking client API of tests/wsclient_h2.py.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect

from .helpers import ServerProcess
from .wsclient import get_events
from .wsclient_h2 import TARGET_IDS, TARGETS, closed_by_server, opened, start_target

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def ws_server(module_impl):
    http, loop = module_impl
    server = ServerProcess("apps.ws:app", "--http", http, "--loop", loop, "--ws", "websockets")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=TARGETS, ids=TARGET_IDS)
def ws_target(request):
    target = start_target(request.param, "--ws", "websockets")
    yield target
    target.server.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def url(server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def wait_for_event(port: int, prefix: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in get_events(port) if e.startswith(prefix)]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no event {prefix!r}: {get_events(port)}")


def test_echo_text_and_bytes(ws_target):
    with opened(ws_target, "/ws/echo") as ws:
        assert ws.accepted
        for message in ("hello, wörld ✓", b"\x00\xffbinary", ""):
            ws.send(message)
            assert ws.recv() == message


def test_one_mib_messages_both_ways(ws_target):
    text, data = "é" * (MIB // 2), bytes(range(256)) * (MIB // 256)
    with opened(ws_target, "/ws/echo") as ws:
        ws.send(text)
        assert ws.recv() == text
        ws.send(data)
        assert ws.recv() == data


def test_fragmented_messages_are_reassembled(ws_target):
    with opened(ws_target, "/ws/echo", deflate=False) as ws:
        ws.send_fragments(["frag", "mented ", "tëxt"])  # one message in fragments
        assert ws.recv() == "fragmented tëxt"
        ws.send_fragments([b"ab", b"", b"cd"])
        assert ws.recv() == b"abcd"


def test_scope(ws_target):
    with opened(ws_target, "/ws/scope?x=1&y=%C3%A9", subprotocols=["chat", "json"]) as ws:
        scope = json.loads(ws.recv())
    over_h2 = ws_target.transport != "http1.1"
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == ("2" if over_h2 else "1.1")
    assert scope["path"] == "/ws/scope"
    assert scope["raw_path"] == "/ws/scope"
    assert scope["query_string"] == "x=1&y=%C3%A9"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["chat", "json"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert scope["state"] == {"greeting": "hello from lifespan"}
    assert scope["server"] == ["127.0.0.1", ws_target.port]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["asgi"]["version"] == "3.0"
    names = [name for name, _ in scope["headers"]]
    assert all(name == name.lower() for name in names)
    assert ("sec-websocket-key" in names) != over_h2  # (HTTP/2 has no key: RFC 8441 section 5)


def test_subprotocol_negotiation(ws_target):
    with opened(ws_target, "/ws/subprotocol?pick=v2.chat", subprotocols=["v1.chat", "v2.chat"]) as ws:
        assert json.loads(ws.recv()) == ["v1.chat", "v2.chat"]
        assert (ws.subprotocol, ws.header("sec-websocket-protocol")) == ("v2.chat", "v2.chat")
    with opened(ws_target, "/ws/subprotocol?pick=none") as ws:
        assert json.loads(ws.recv()) == []
        assert (ws.subprotocol, ws.header("sec-websocket-protocol")) == (None, None)


def test_accept_headers(ws_target):
    with opened(ws_target, "/ws/headers") as ws:
        assert ws.recv() == "accepted"
    assert ws.header("x-ws-extra") == "yes"
    assert ws.header("set-cookie") == "ws=1; Path=/"
    assert ws.header("server") == "fastserve"
    assert [name for name, _ in ws.headers].count("date") == 1


def test_server_close_code_and_reason_then_send_raises(ws_target):
    with opened(ws_target, "/ws/close?code=4001&reason=b%C3%BFe") as ws:
        assert closed_by_server(ws) == (4001, "bÿe")
    event = wait_for_event(ws_target.port, "send-after-close")
    assert "ClientDisconnected" in event and "closed" in event


def test_client_close_code_and_reason_reach_the_app(ws_target):
    name = f"client-close-{ws_target.transport}"
    with opened(ws_target, f"/ws/record?name={name}") as ws:
        ws.close(4321, "client says bye")
    assert wait_for_event(ws_target.port, f"{name}: disconnect") == f"{name}: disconnect 4321 client says bye"


def test_client_vanishing_is_disconnect_1006(ws_target):
    """HTTP/1.1: the TCP connection goes; HTTP/2: the connection under the stream goes."""
    name = f"vanish-{ws_target.transport}"
    with opened(ws_target, f"/ws/record?name={name}") as ws:
        assert ws.accepted
        wait_for_event(ws_target.port, f"{name}: accepted")
        ws.abort()
    assert wait_for_event(ws_target.port, f"{name}: disconnect") == f"{name}: disconnect 1006"


def test_close_before_accept_is_403(ws_target):
    with opened(ws_target, "/ws/reject") as ws:
        assert (ws.accepted, ws.status) == (False, 403)


def test_denial_response(ws_target):
    with opened(ws_target, "/ws/deny?status=401") as ws:
        assert (ws.accepted, ws.status) == (False, 401)
    assert ws.header("www-authenticate") == "Bearer"
    assert ws.header("content-length") == "8"
    assert ws.body == b"no entry"


def test_app_error_before_accept_is_500_and_logged(ws_target):
    start = len(ws_target.server.lines)
    with opened(ws_target, "/ws/raise-before") as ws:
        assert (ws.accepted, ws.status) == (False, 500)
    ws_target.server.wait_for_line("boom before accept", start=start)


def test_app_error_after_accept_is_1011_and_logged(ws_target):
    start = len(ws_target.server.lines)
    with opened(ws_target, "/ws/raise-after") as ws:
        ws.send("trigger")
        assert closed_by_server(ws)[0] == 1011
    ws_target.server.wait_for_line("boom after accept", start=start)


def test_app_returning_without_close_is_1000(ws_target):
    with opened(ws_target, "/ws/return") as ws:
        assert ws.recv() == "bye"
        assert closed_by_server(ws)[0] == 1000


def test_per_message_deflate_negotiated(ws_target):
    for deflate in (True, False):
        with opened(ws_target, "/ws/echo", deflate=deflate) as ws:
            ws.send("z" * 100_000)
            assert ws.recv() == "z" * 100_000
        extensions = ws.header("sec-websocket-extensions")
        assert extensions.startswith("permessage-deflate") if deflate else extensions is None


def test_reading_pauses_while_the_app_is_behind(ws_server):
    """The app sleeps before reading 200 x 64 KiB; nothing is lost, and the client is held back.
    (The sleep starts at the accept; 2 s leave room for a client that sees the open late under load.)"""
    count, chunk = 200, b"m" * 65536

    async def scenario():
        async with connect(url(ws_server, f"/ws/slow-reader?n={count}&delay=2"), compression=None) as ws:
            started = time.monotonic()
            for _ in range(count):
                await ws.send(chunk)
            held_back = time.monotonic() - started
            assert await ws.recv() == str(count)
            return held_back

    # 12.5 MiB cannot all sit in kernel buffers plus a 32-message queue: the sends must wait
    # for the app's first receive() (after 2 s).
    assert run(scenario()) > 0.5


def test_send_waits_while_the_transport_is_paused(ws_server):
    async def scenario():
        async with connect(url(ws_server, "/ws/flood?n=200&size=65536"), compression=None, max_queue=1) as ws:
            await asyncio.sleep(1.0)  # not reading: the server's send() must block
            early = [e for e in get_events(ws_server.port) if e.startswith("flood")]
            received = 0
            while received < 200:
                assert len(await ws.recv()) == 65536
                received += 1
            return early

    assert run(scenario()) == []
    assert wait_for_event(ws_server.port, "flood: sent") == "flood: sent 200"


def test_plain_http_still_served_alongside(ws_server):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{ws_server.port}/anything", data=b"body") as response:
        assert response.read() == b"http:body"


def test_bytes_sent_with_the_handshake_are_not_lost(ws_server):
    from .wsclient import TEXT, RawWebSocket, frame

    early = frame(TEXT, "early bïrd".encode()) + frame(TEXT, b"second")
    ws = RawWebSocket(ws_server.port, "/ws/echo", early=early)
    try:
        assert ws.recv_frame() == (TEXT, "early bïrd".encode())
        assert ws.recv_frame() == (TEXT, b"second")
    finally:
        ws.close()


def test_proxy_headers_from_a_trusted_proxy_make_wss(ws_server):
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}

    async def scenario():
        async with connect(url(ws_server, "/ws/scope"), additional_headers=headers) as ws:
            return json.loads(await ws.recv())

    scope = run(scenario())
    assert scope["scheme"] == "wss"
    assert scope["client"][0] == "203.0.113.7"


def test_h2c_upgrade_request_is_served_as_http_with_its_body(serve, module_impl):
    """With the h2c upgrade off (with it on: tests/test_h2_live.py)."""
    from .helpers import raw_request

    http, loop = module_impl
    server = serve("apps.ws:app", "--http", http, "--loop", loop, "--http2-cleartext", "prior-knowledge")
    request = (b"POST /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
               b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 4\r\n\r\nbody")
    response = raw_request(server.port, request + b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert response.count(b"HTTP/1.1 200 ") == 2, response
    assert b"http:body" in response


def test_many_concurrent_connections_stay_isolated(ws_server):
    async def client(i):
        async with connect(url(ws_server, "/ws/echo")) as ws:
            for j in range(5):
                await ws.send(f"{i}:{j}")
                assert await ws.recv() == f"{i}:{j}"

    async def scenario():
        await asyncio.gather(*(client(i) for i in range(100)))

    run(scenario())
