"""ASGI extensions on HTTP/1.1: trailers and early hints (tests/test_extensions.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json

PARTS = [b"first part, ", b"second part"]
CHECKSUM = hashlib.sha256(b"".join(PARTS)).hexdigest().encode()
LINKS = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/trailers":
        # A digest known only once the body is out: the classic use of a trailer field.
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum, x-parts")]})
        for part in PARTS:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", CHECKSUM)], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-parts", b"%d" % len(PARTS))]})
    elif path == "/bad-trailers":
        await send({"type": "http.response.start", "status": 200, "trailers": True, "headers": []})
        await send({"type": "http.response.body", "body": b"partial"})
        await send({"type": "http.response.trailers", "headers": [(b"content-length", b"0")]})
    elif path == "/early-hints":
        await send({"type": "http.response.early_hint", "links": LINKS})
        await asyncio.sleep(0.05)  # the final response is still being made
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"final"})
    elif path == "/extensions":
        offered = sorted(name for name in scope.get("extensions", {}))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(offered).encode()})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
