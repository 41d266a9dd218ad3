"""A plain ASGI 3 app with one WebSocket route per behaviour under test, plus GET /events.

Routes take their parameters from the query string (``/ws/close?code=4001&reason=bye``).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

EVENTS: list[str] = []  # what the app observed, fetched with GET /events


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["type"] == "http":
        return await http(scope, receive, send)
    handler = ROUTES.get(scope["path"])
    if handler is None:
        return await send({"type": "websocket.close", "code": 1008})
    return await handler(scope, receive, send, query)


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["greeting"] = "hello from lifespan"
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def http(scope, receive, send):
    """GET /events, and an echo of the request body for anything else (--ws none tests)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/events":
        body = json.dumps(EVENTS).encode()
    else:
        body = b"http:" + body
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def accept(receive, send, **extra):
    message = await receive()
    assert message["type"] == "websocket.connect", message
    await send({"type": "websocket.accept", **extra})


async def echo(scope, receive, send, query):
    await accept(receive, send)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def scope_view(scope, receive, send, query):
    await accept(receive, send)
    data = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state")}
    data["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    data["raw_path"] = scope["raw_path"].decode("latin-1")
    data["query_string"] = scope["query_string"].decode("latin-1")
    data["state"] = dict(scope["state"])
    await send({"type": "websocket.send", "text": json.dumps(data)})
    await send({"type": "websocket.close"})


async def subprotocol(scope, receive, send, query):
    wanted = query.get("pick")
    chosen = wanted if wanted in scope["subprotocols"] else None
    await accept(receive, send, subprotocol=chosen)
    await send({"type": "websocket.send", "text": json.dumps(scope["subprotocols"])})
    await receive()


async def accept_headers(scope, receive, send, query):
    await accept(receive, send, headers=[(b"x-ws-extra", b"yes"), (b"Set-Cookie", b"ws=1; Path=/")])
    await send({"type": "websocket.send", "text": "accepted"})
    await receive()


async def close(scope, receive, send, query):
    await accept(receive, send)
    code = int(query.get("code", "1000"))
    await send({"type": "websocket.close", "code": code, "reason": query.get("reason", "")})
    try:
        await send({"type": "websocket.send", "text": "after close"})
    except OSError as exc:
        EVENTS.append(f"send-after-close: {type(exc).__name__}: {exc}")


async def reject(scope, receive, send, query):
    await receive()
    await send({"type": "websocket.close", "code": 1008})


async def deny(scope, receive, send, query):
    await receive()
    await send({"type": "websocket.http.response.start", "status": int(query.get("status", "401")),
                "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})


async def raise_before(scope, receive, send, query):
    await receive()
    raise RuntimeError("boom before accept")


async def raise_after(scope, receive, send, query):
    await accept(receive, send)
    await receive()
    raise RuntimeError("boom after accept")


async def return_open(scope, receive, send, query):
    await accept(receive, send)
    await send({"type": "websocket.send", "text": "bye"})


async def record(scope, receive, send, query):
    """Wait for the disconnect and record its code and reason (client close, shutdown, timeout)."""
    name = query.get("name", "record")
    await accept(receive, send)
    EVENTS.append(f"{name}: accepted")
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            event = f"{name}: disconnect {message['code']} {message.get('reason', '')}".rstrip()
            EVENTS.append(event)
            print(event, flush=True)  # visible after shutdown too
            return


async def slow_reader(scope, receive, send, query):
    """Sleeps before reading, so the server must pause reading; reports how many it got."""
    count = int(query.get("n", "100"))
    await accept(receive, send)
    await asyncio.sleep(float(query.get("delay", "1")))
    received = 0
    while received < count:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            break
        received += 1
    await send({"type": "websocket.send", "text": str(received)})
    await receive()


async def flood(scope, receive, send, query):
    """Sends faster than a client reads: send() must wait while the transport is paused."""
    count, size = int(query.get("n", "64")), int(query.get("size", "65536"))
    await accept(receive, send)
    chunk = b"x" * size
    for _ in range(count):
        await send({"type": "websocket.send", "bytes": chunk})
    EVENTS.append(f"flood: sent {count}")
    await receive()


async def slow_accept(scope, receive, send, query):
    await receive()
    await asyncio.sleep(float(query.get("delay", "0.5")))
    try:
        await accept_now(send)
    except OSError as exc:
        EVENTS.append(f"slow-accept: {type(exc).__name__}")
        print(f"slow-accept: {type(exc).__name__}", flush=True)
        return
    await receive()


async def accept_now(send):
    await send({"type": "websocket.accept"})


ROUTES = {
    "/ws/echo": echo,
    "/ws/scope": scope_view,
    "/ws/subprotocol": subprotocol,
    "/ws/headers": accept_headers,
    "/ws/close": close,
    "/ws/reject": reject,
    "/ws/deny": deny,
    "/ws/raise-before": raise_before,
    "/ws/raise-after": raise_after,
    "/ws/return": return_open,
    "/ws/record": record,
    "/ws/slow-reader": slow_reader,
    "/ws/flood": flood,
    "/ws/slow-accept": slow_accept,
}
