"""Apps for tests/test_server_hostile.py: apps that block the event loop, and slow responses."""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import parse_qs

from .lifespan import complete_lifespan


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await complete_lifespan(receive, send)
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] == "/blocking-stream":
        await blocking_stream(send, query)
    elif scope["path"] == "/block":
        time.sleep(float(query.get("t", "0.5")))  # blocks the event loop: events pile up meanwhile
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"blocked"})
    elif scope["path"] == "/sleep":
        await asyncio.sleep(float(query.get("t", "1")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slept"})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"Hello, world!"})


async def blocking_stream(send, query):
    """A chunk, then a blocking wait (no await) until the client says it has the chunk.

    The client creates the marker file once it has read the first chunk; if the server held the
    chunk back until the app yields, that never happens and the wait ends after ``timeout``.
    """
    headers = [(b"content-type", b"text/plain")]
    if query.get("framing") == "length":
        headers.append((b"content-length", b"15"))  # "first\n" + "released\n" / "timeout!\n"
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
    deadline = time.monotonic() + float(query.get("timeout", "10"))
    marker = query["marker"]
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.02)  # blocking on purpose: the event loop does not run
    outcome = b"released\n" if os.path.exists(marker) else b"timeout!\n"
    await send({"type": "http.response.body", "body": outcome})
