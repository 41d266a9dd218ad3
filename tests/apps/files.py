"""Files sent with the pathsend and zerocopysend extensions (tests/test_files.py).

- ``/starlette?path=P``: Starlette's FileResponse (which uses pathsend when the scope offers it);
- ``/zerocopy?path=P&offset=N&count=N``: a raw ASGI app sending part of P with zerocopysend;
- ``/scope``: the extensions the scope offers, as JSON; ``/hello``: a plain response.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from starlette.responses import FileResponse


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] == "/starlette":
        await FileResponse(query["path"])(scope, receive, send)
    elif scope["path"] == "/zerocopy":
        await zerocopy(send, query["path"], int(query["offset"]), int(query["count"]))
    elif scope["path"] == "/scope":
        await respond(send, json.dumps(sorted(scope.get("extensions", {}))).encode())
    else:
        await respond(send, b"hello")


async def zerocopy(send, path, offset, count):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % count)]})
    with open(path, "rb") as file:
        await send({"type": "http.response.zerocopysend", "file": file, "offset": offset, "count": count})


async def respond(send, body):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
