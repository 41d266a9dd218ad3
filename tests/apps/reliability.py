"""App for the slowloris, flood, soak and shutdown-under-load tests: HTTP, a WebSocket echo and a
``/tasks`` test hook reporting how many asyncio tasks the server process holds."""

from __future__ import annotations

import asyncio
import gc
import json
from urllib.parse import parse_qs

from .lifespan import complete_lifespan


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await complete_lifespan(receive, send)
    if scope["type"] == "websocket":
        return await echo(receive, send)
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] == "/sleep":
        await asyncio.sleep(float(query.get("t", "1")))
        body = b"slept"
    elif scope["path"] == "/tasks":
        body = str(len(asyncio.all_tasks())).encode()
    elif scope["path"] == "/gc-off":  # collect once, then let only reference counting free objects
        gc.collect()
        gc.disable()
        body = b"off"
    elif scope["path"] == "/objects":  # live connection objects, after a full collection
        collect = query.get("collect") != "0"  # "0": what reference counting alone left alive
        if collect:
            gc.collect()
        names = ("WebSocketSession", "HTTPProtocol", "RequestResponseCycle", "H1Cycle", "ServerProtocol")
        counts = {name: 0 for name in names}
        for obj in gc.get_objects():
            name = type(obj).__name__
            if name in counts:
                counts[name] += 1
        body = json.dumps(counts).encode()
        gc.enable()  # (after counting: enabling lets the next allocation collect)
    else:
        body = b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def echo(receive, send):
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
