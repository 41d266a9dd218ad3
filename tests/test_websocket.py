"""The ASGI WebSocket spec on a real server, on every parser x loop combination.

A ``websockets`` client talks to ``tests/apps/ws.py`` served by ``python -m fastserve``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .helpers import ServerProcess
from .wsclient import get_events

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def ws_server(module_impl):
    http, loop = module_impl
    server = ServerProcess("apps.ws:app", "--http", http, "--loop", loop, "--ws", "websockets")
    server.start()
    yield server
    server.stop()


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


def test_echo_text_and_bytes(ws_server):
    async def scenario():
        async with connect(url(ws_server, "/ws/echo")) as ws:
            await ws.send("hello, wörld ✓")
            assert await ws.recv() == "hello, wörld ✓"
            await ws.send(b"\x00\xffbinary")
            assert await ws.recv() == b"\x00\xffbinary"
            await ws.send("")
            assert await ws.recv() == ""

    run(scenario())


def test_one_mib_messages_both_ways(ws_server):
    text, data = "é" * (MIB // 2), bytes(range(256)) * (MIB // 256)

    async def scenario():
        async with connect(url(ws_server, "/ws/echo"), max_size=4 * MIB) as ws:
            await ws.send(text)
            assert await ws.recv() == text
            await ws.send(data)
            assert await ws.recv() == data

    run(scenario())


def test_fragmented_messages_are_reassembled(ws_server):
    async def scenario():
        async with connect(url(ws_server, "/ws/echo"), compression=None) as ws:
            await ws.send(["frag", "mented ", "tëxt"])  # a list sends one message in fragments
            assert await ws.recv() == "fragmented tëxt"
            await ws.send([b"ab", b"", b"cd"])
            assert await ws.recv() == b"abcd"

    run(scenario())


def test_scope(ws_server):
    async def scenario():
        async with connect(url(ws_server, "/ws/scope?x=1&y=%C3%A9"), subprotocols=["chat", "json"]) as ws:
            return json.loads(await ws.recv())

    scope = run(scenario())
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/ws/scope"
    assert scope["raw_path"] == "/ws/scope"
    assert scope["query_string"] == "x=1&y=%C3%A9"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["chat", "json"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert scope["state"] == {"greeting": "hello from lifespan"}
    assert scope["server"] == ["127.0.0.1", ws_server.port]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["asgi"]["version"] == "3.0"
    names = [name for name, _ in scope["headers"]]
    assert "sec-websocket-key" in names and all(name == name.lower() for name in names)


def test_subprotocol_negotiation(ws_server):
    async def scenario(offer, pick):
        async with connect(url(ws_server, f"/ws/subprotocol?pick={pick}"), subprotocols=offer) as ws:
            offered = json.loads(await ws.recv())
            return ws.subprotocol, offered, ws.response.headers.get("Sec-WebSocket-Protocol")

    chosen, offered, header = run(scenario(["v1.chat", "v2.chat"], "v2.chat"))
    assert (chosen, offered, header) == ("v2.chat", ["v1.chat", "v2.chat"], "v2.chat")

    async def without_offer():
        async with connect(url(ws_server, "/ws/subprotocol?pick=none")) as ws:
            assert json.loads(await ws.recv()) == []
            return ws.subprotocol, ws.response.headers.get("Sec-WebSocket-Protocol")

    assert run(without_offer()) == (None, None)


def test_accept_headers(ws_server):
    async def scenario():
        async with connect(url(ws_server, "/ws/headers")) as ws:
            assert await ws.recv() == "accepted"
            return ws.response.headers

    headers = run(scenario())
    assert headers["x-ws-extra"] == "yes"
    assert headers["set-cookie"] == "ws=1; Path=/"
    assert headers["server"] == "fastserve"
    assert len(headers.get_all("date")) == 1


def test_server_close_code_and_reason_then_send_raises(ws_server):
    async def scenario():
        async with connect(url(ws_server, "/ws/close?code=4001&reason=b%C3%BFe")) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason

    assert run(scenario()) == (4001, "bÿe")
    event = wait_for_event(ws_server.port, "send-after-close")
    assert "ClientDisconnected" in event and "closed" in event


def test_client_close_code_and_reason_reach_the_app(ws_server):
    async def scenario():
        async with connect(url(ws_server, "/ws/record?name=client-close")) as ws:
            await ws.close(4321, "client says bye")

    run(scenario())
    assert wait_for_event(ws_server.port, "client-close: disconnect") == "client-close: disconnect 4321 client says bye"


def test_client_vanishing_is_disconnect_1006(ws_server):
    with socket.create_connection(("127.0.0.1", ws_server.port)) as sock:
        from .wsclient import handshake_request

        sock.sendall(handshake_request("/ws/record?name=vanish"))
        assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
        wait_for_event(ws_server.port, "vanish: accepted")
    assert wait_for_event(ws_server.port, "vanish: disconnect") == "vanish: disconnect 1006"


def test_close_before_accept_is_403(ws_server):
    async def scenario():
        with pytest.raises(InvalidStatus) as info:
            async with connect(url(ws_server, "/ws/reject")):
                pass
        return info.value.response

    response = run(scenario())
    assert response.status_code == 403


def test_denial_response(ws_server):
    async def scenario():
        with pytest.raises(InvalidStatus) as info:
            async with connect(url(ws_server, "/ws/deny?status=401")):
                pass
        return info.value.response

    response = run(scenario())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-length"] == "8"
    assert response.body == b"no entry"


def test_app_error_before_accept_is_500_and_logged(ws_server):
    start = len(ws_server.lines)

    async def scenario():
        with pytest.raises(InvalidStatus) as info:
            async with connect(url(ws_server, "/ws/raise-before")):
                pass
        return info.value.response.status_code

    assert run(scenario()) == 500
    ws_server.wait_for_line("boom before accept", start=start)


def test_app_error_after_accept_is_1011_and_logged(ws_server):
    start = len(ws_server.lines)

    async def scenario():
        async with connect(url(ws_server, "/ws/raise-after")) as ws:
            await ws.send("trigger")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code

    assert run(scenario()) == 1011
    ws_server.wait_for_line("boom after accept", start=start)


def test_app_returning_without_close_is_1000(ws_server):
    async def scenario():
        async with connect(url(ws_server, "/ws/return")) as ws:
            assert await ws.recv() == "bye"
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code

    assert run(scenario()) == 1000


def test_per_message_deflate_negotiated(ws_server):
    async def scenario(compression):
        async with connect(url(ws_server, "/ws/echo"), compression=compression) as ws:
            await ws.send("z" * 100_000)
            assert await ws.recv() == "z" * 100_000
            return ws.response.headers.get("Sec-WebSocket-Extensions")

    assert run(scenario("deflate")).startswith("permessage-deflate")
    assert run(scenario(None)) is None


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
