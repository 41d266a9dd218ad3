"""Apps that answer without reading the request body, or send invalid ASGI messages."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

# Invalid messages, by name: what the app sends (a list of messages, in order).
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
INVALID = {
    "str-body": [START, {"type": "http.response.body", "body": "text"}],
    "large-str-body": [START, {"type": "http.response.body", "body": "x" * 100_000}],
    "none-body": [START, {"type": "http.response.body", "body": None}],
    "str-status": [{**START, "status": "200"}],
    "float-status": [{**START, "status": 200.0}],
    "no-status": [{"type": "http.response.start"}],
    "unknown-first-type": [{"type": "http.response.bogus"}],
    "unknown-type": [START, {"type": "http.response.bogus"}],
    "no-type": [START, {"body": b"x"}],
    "str-header-name": [{**START, "headers": [("content-type", b"text/plain")]}],
    "str-header-value": [{**START, "headers": [(b"content-type", "text/plain")]}],
    "headers-none": [{**START, "headers": None}],
    "header-triples": [{**START, "headers": [(b"a", b"b", b"c")]}],
    "streamed-then-str": [START, {"type": "http.response.body", "body": b"part", "more_body": True},
                          {"type": "http.response.body", "body": "text"}],
}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/ignore-body":
        # Middleware refusing before the body is read (a 401 from an auth layer).
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"denied"})
    elif path == "/slow":
        await asyncio.sleep(float(query.get("s", "0.5")))
        await send(START)
        await send({"type": "http.response.body", "body": b"slow"})
    elif path == "/invalid":
        for message in INVALID[query["kind"]]:
            await send(message)
    elif path == "/status-type":
        # A status that is not an int raises in the app, which can still answer properly.
        try:
            await send({**START, "status": 200.0})
        except RuntimeError as exc:
            outcome = f"raised {type(exc).__name__}".encode()
        else:
            outcome = b"accepted"
        await send(START)
        await send({"type": "http.response.body", "body": outcome})
    elif path == "/asgi-scope":
        seen = b"dirty" if "written-by-app" in scope["asgi"] else b"clean"
        scope["asgi"]["written-by-app"] = True
        await send(START)
        await send({"type": "http.response.body", "body": seen})
    else:
        await send(START)
        await send({"type": "http.response.body", "body": b"ok"})
