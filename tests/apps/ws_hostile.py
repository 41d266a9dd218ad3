"""WebSocket routes for the hostile-client tests (tests/test_websocket_hostile.py).

Routes take their parameters from the query string; GET /events returns what the app observed.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

from .lifespan import complete_lifespan

EVENTS: list[str] = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await complete_lifespan(receive, send)
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["type"] == "http":
        body = json.dumps(EVENTS).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await ROUTES[scope["path"]](scope, receive, send, query)


async def echo(scope, receive, send, query):
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


async def hold(scope, receive, send, query):
    """Accepts (after ``accept_delay`` seconds), then does not read for ``seconds``; then reads
    until the disconnect and reports how many messages and bytes it got."""
    await receive()
    await asyncio.sleep(float(query.get("accept_delay", "0")))
    await send({"type": "websocket.accept"})
    await asyncio.sleep(float(query.get("seconds", "3")))
    count = size = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            break
        count += 1
        size += len(message.get("bytes") or message.get("text") or "")
    EVENTS.append(f"hold: {count} messages, {size} bytes")


async def send_both(scope, receive, send, query):
    """ASGI: exactly one of text and bytes; the server must refuse both, and neither."""
    await receive()
    await send({"type": "websocket.accept"})
    for message in ({"text": "t", "bytes": b"b"}, {}, {"text": None, "bytes": None}):
        try:
            await send({"type": "websocket.send", **message})
        except (RuntimeError, ValueError) as exc:
            EVENTS.append(f"refused: {type(exc).__name__}")
        else:
            EVENTS.append("accepted")
    await send({"type": "websocket.send", "text": "done"})
    await send({"type": "websocket.close"})


async def scope_write(scope, receive, send, query):
    """Reports scope["asgi"] and scope["extensions"] as it found them, then writes into both."""
    await receive()
    await send({"type": "websocket.accept"})
    seen = json.dumps({"asgi": scope["asgi"], "extensions": {k: v for k, v in scope["extensions"].items() if k != "tls"}})
    scope["asgi"]["written"] = "by an app"
    scope["extensions"]["written"] = {}
    scope["extensions"]["websocket.http.response"]["written"] = True
    await send({"type": "websocket.send", "text": seen})
    await send({"type": "websocket.close"})


ROUTES = {
    "/ws/echo": echo,
    "/ws/hold": hold,
    "/ws/send-both": send_both,
    "/ws/scope-write": scope_write,
}
