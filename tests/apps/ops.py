"""The app behind tests/test_ops_*.py: uploads, slow and streaming responses, a blocking route."""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import parse_qs

SEEN: list[str] = []  # what the app observed (GET /seen)


async def respond(send, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def upload(scope, receive, send, query) -> None:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            SEEN.append(f"upload disconnected after {size} bytes")
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    SEEN.append(f"upload {size}")
    await respond(send, 200, b"%d" % size)


async def hello(scope, receive, send, query) -> None:
    await respond(send, 200, b"hello")


async def sleep(scope, receive, send, query) -> None:
    await asyncio.sleep(float(query.get("s", "1")))
    await respond(send, 200, b"slept")


async def block(scope, receive, send, query) -> None:
    time.sleep(float(query.get("s", "1")))  # blocks the event loop on purpose
    await respond(send, 200, b"blocked")


async def pid(scope, receive, send, query) -> None:
    await respond(send, 200, str(os.getpid()).encode())


async def seen(scope, receive, send, query) -> None:
    await respond(send, 200, "\n".join(SEEN).encode())


async def sse(scope, receive, send, query) -> None:
    """Server-sent events every 0.1 s until http.disconnect; then a last event and a clean end."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
    stop = asyncio.Event()

    async def listen() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        stop.set()

    listener = asyncio.ensure_future(listen())
    count = 0
    while not stop.is_set():
        await send({"type": "http.response.body", "body": b"data: tick %d\n\n" % count, "more_body": True})
        count += 1
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass
    await send({"type": "http.response.body", "body": b"event: bye\ndata: server stopping\n\n", "more_body": False})
    listener.cancel()


async def sse_return(scope, receive, send, query) -> None:
    """Like sse, but returns on http.disconnect without ending its response (sse-starlette does)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        pass


async def fail(scope, receive, send, query) -> None:
    raise RuntimeError("the app failed on purpose")


async def scope_view(scope, receive, send, query) -> None:
    import json

    view = {"client": scope["client"], "server": scope["server"], "scheme": scope["scheme"],
            "tls": scope.get("extensions", {}).get("tls")}
    await respond(send, 200, json.dumps(view).encode(), b"application/json")


ROUTES = {"/scope": scope_view, "/raise": fail, "/": hello, "/upload": upload, "/sleep": sleep, "/block": block, "/pid": pid, "/seen": seen,
          "/sse": sse, "/sse-return": sse_return}


async def echo_websocket(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
        else:
            return


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await echo_websocket(receive, send)
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    handler = ROUTES.get(scope["path"])
    if handler is None:
        await respond(send, 404, b"not found")
        return
    await handler(scope, receive, send, query)
