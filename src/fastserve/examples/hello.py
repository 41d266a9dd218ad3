"""The app ``make run`` serves: a small page, a JSON endpoint and an echo, in plain ASGI 3."""

from __future__ import annotations

import json
import os
import time

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>fastserve works</title></head>
<body><h1>fastserve works</h1>
<p>This page is served by fastserve. Try <a href="/json">/json</a> or
<code>curl -d hello http://127.0.0.1:8000/echo</code>.</p></body></html>
"""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started_at"] = time.time()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/":
        await respond(send, 200, b"text/html; charset=utf-8", PAGE)
    elif path == "/json":
        started = scope.get("state", {}).get("started_at")
        payload = {
            "server": "fastserve",
            "pid": os.getpid(),
            "method": scope["method"],
            "http_version": scope["http_version"],
            "client": scope["client"],
            "uptime_seconds": round(time.time() - started, 3) if started else None,
        }
        await respond(send, 200, b"application/json", json.dumps(payload).encode())
    elif path == "/echo":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await respond(send, 200, b"application/octet-stream", body)
    else:
        await respond(send, 404, b"text/plain; charset=utf-8", b"Not Found\n")


async def respond(send, status: int, content_type: bytes, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})
