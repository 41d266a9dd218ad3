"""An app for supervisor and Gunicorn tests: which process answered, and per-process state."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from urllib.parse import parse_qs

HITS = {"count": 0}  # per process: module state is never shared between workers


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["lifespan_pid"] = os.getpid()
            print(f"lifespan startup in pid {os.getpid()}", file=sys.stderr, flush=True)
            await send({"type": "lifespan.startup.complete"})
        else:
            print(f"lifespan shutdown in pid {os.getpid()}", file=sys.stderr, flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def respond(send, body: bytes, status: int = 200, content_type: bytes = b"text/plain"):
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    if scope["type"] != "http":
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    HITS["count"] += 1
    if path == "/pid":
        return await respond(send, str(os.getpid()).encode())
    if path == "/state":
        data = {"pid": os.getpid(), "lifespan_pid": scope["state"].get("lifespan_pid"), "hits": HITS["count"]}
        return await respond(send, json.dumps(data).encode(), content_type=b"application/json")
    if path == "/scope":
        data = {"client": scope["client"], "scheme": scope["scheme"], "root_path": scope["root_path"]}
        return await respond(send, json.dumps(data).encode(), content_type=b"application/json")
    if path == "/sleep":  # busy but healthy: the event loop keeps running
        await asyncio.sleep(float(query.get("t", "1")))
        return await respond(send, b"slept")
    if path == "/block":  # unhealthy: blocks the event loop
        time.sleep(float(query.get("t", "1")))
        return await respond(send, b"blocked")
    await respond(send, b"not found", status=404)
