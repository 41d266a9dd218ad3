"""Plain ASGI 3 app, no framework: the hello-world, 64 KiB, streamed echo and WebSocket endpoints.

Routes:
    GET  /           "Hello, world!" (13 bytes, content-length set)
    GET  /pid        "Hello, world!" with the worker's pid in x-worker-pid (workers2's accept probe)
    GET  /64k        64 KiB of bytes in one body message
    POST /echo       streams the request body back chunk by chunk, as it arrives (chunked response)
    WS   /ws/echo    sends every message back to its sender
    WS   /ws/broadcast  sends every message to every connected /ws/broadcast client (sender included)
"""

from __future__ import annotations

import os

HELLO = b"Hello, world!"
BLOB_64K = b"x" * (64 * 1024)
_TEXT_HEADERS = [(b"content-type", b"text/plain")]
_HELLO_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(HELLO))]
_BLOB_HEADERS = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % len(BLOB_64K))]
_ECHO_HEADERS = [(b"content-type", b"application/octet-stream")]

# The send callables of the connected /ws/broadcast clients (one worker process: one set).
_broadcast_members: set = set()


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        await _http(scope, receive, send)
    elif kind == "websocket":
        await _websocket(scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)


async def _http(scope, receive, send):
    path = scope["path"]
    if path == "/":
        await send({"type": "http.response.start", "status": 200, "headers": _HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO})
    elif path == "/pid":
        headers = [*_HELLO_HEADERS, (b"x-worker-pid", str(os.getpid()).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": HELLO})
    elif path == "/64k":
        await send({"type": "http.response.start", "status": 200, "headers": _BLOB_HEADERS})
        await send({"type": "http.response.body", "body": BLOB_64K})
    elif path == "/echo":
        await _echo(receive, send)
    else:
        await send({"type": "http.response.start", "status": 404, "headers": _TEXT_HEADERS})
        await send({"type": "http.response.body", "body": b"Not Found"})


async def _echo(receive, send):
    """Each request body chunk goes straight back out: neither side buffers the whole body."""
    await send({"type": "http.response.start", "status": 200, "headers": _ECHO_HEADERS})
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if body or not more:
            await send({"type": "http.response.body", "body": body, "more_body": more})


async def _websocket(scope, receive, send):
    if (await receive())["type"] != "websocket.connect":
        return
    path = scope["path"]
    if path not in ("/ws/echo", "/ws/broadcast"):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    if path == "/ws/echo":
        await _ws_echo(receive, send)
    else:
        await _ws_broadcast(receive, send)


async def _ws_echo(receive, send):
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send(_outgoing(message))


async def _ws_broadcast(receive, send):
    _broadcast_members.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            outgoing = _outgoing(message)
            for member in list(_broadcast_members):
                try:
                    await member(outgoing)
                except Exception:  # that member went away; its own task removes it
                    _broadcast_members.discard(member)
    finally:
        _broadcast_members.discard(send)


def _outgoing(message):
    text = message.get("text")
    if text is not None:
        return {"type": "websocket.send", "text": text}
    return {"type": "websocket.send", "bytes": message.get("bytes") or b""}


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
