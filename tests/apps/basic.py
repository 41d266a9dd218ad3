"""A plain ASGI 3 app with one route per behaviour under test."""

from __future__ import annotations

import asyncio
import json
import os
from urllib.parse import parse_qs

EVENTS: list[str] = []  # things the app observed, fetched with GET /events


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("disconnected")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def respond(send, status=200, body=b"", headers=None, content_type=b"text/plain"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["greeting"] = "hello from lifespan"
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    handler = ROUTES.get(path)
    if handler is None:
        return await respond(send, 404, b"not found")
    return await handler(scope, receive, send, query)


async def hello(scope, receive, send, query):
    await respond(send, 200, b"Hello, world!")


async def echo(scope, receive, send, query):
    body = await read_body(receive)
    await respond(send, 200, body, content_type=b"application/octet-stream")


async def scope_view(scope, receive, send, query):
    data = {k: _jsonable(v) for k, v in scope.items() if k not in ("state",)}
    data["state"] = dict(scope.get("state", {}))
    await respond(send, 200, json.dumps(data).encode(), content_type=b"application/json")


async def stream(scope, receive, send, query):
    count = int(query.get("n", "5"))
    size = int(query.get("size", "10"))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(count):
        await send({"type": "http.response.body", "body": bytes([97 + i % 26]) * size, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def big(scope, receive, send, query):
    await respond(send, 200, b"x" * int(query.get("size", "65536")))


async def status(scope, receive, send, query):
    code = int(query.get("code", "200"))
    await respond(send, code, b"body that must not be sent" if code in (204, 304) else b"ok")


async def raise_early(scope, receive, send, query):
    raise RuntimeError("boom before the response")


async def raise_late(scope, receive, send, query):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom after the response started")


async def no_response(scope, receive, send, query):
    return None


async def start_only(scope, receive, send, query):
    await send({"type": "http.response.start", "status": 200, "headers": []})


async def content_length_short(scope, receive, send, query):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
    await send({"type": "http.response.body", "body": b"abc"})


async def content_length_long(scope, receive, send, query):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"abcdefghij"})


async def bad_header(scope, receive, send, query):
    kind = query.get("kind", "crlf")
    value = {"crlf": b"a\r\nset-cookie: evil=1", "lf": b"a\nb", "nul": b"a\x00b", "cr": b"a\rb"}[kind]
    await respond(send, 200, b"should not be sent", headers=[(b"x-test", value)])


async def split_twin(scope, receive, send, query):
    # The same header bytes as /bad-header?kind=crlf, but as two honest headers.
    await respond(send, 200, b"twin", headers=[(b"x-test", b"a"), (b"set-cookie", b"evil=1")])


async def header_shapes(scope, receive, send, query):
    pairs = [(b"x-shape", query.get("shape", "").encode()), (b"content-length", b"5")]
    shape = query.get("shape")
    if shape == "lists":
        headers = [list(pair) for pair in pairs]
    elif shape == "generator":
        headers = (pair for pair in pairs)
    else:
        headers = tuple(pairs)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"shape"})


async def bad_header_name(scope, receive, send, query):
    await respond(send, 200, b"should not be sent", headers=[(b"x test:", b"v")])


async def custom_headers(scope, receive, send, query):
    await respond(send, 200, b"ok", headers=[(b"x-one", b"1"), (b"x-dup", b"a"), (b"x-dup", b"b"), (b"Server", b"custom")])


async def app_closes(scope, receive, send, query):
    await respond(send, 200, b"closing", headers=[(b"connection", b"close")])


async def send_after_complete(scope, receive, send, query):
    await respond(send, 200, b"done")
    try:
        await send({"type": "http.response.body", "body": b"more"})
    except RuntimeError as exc:
        EVENTS.append(f"send-after-complete: {exc}")
    else:
        EVENTS.append("send-after-complete: ignored")


async def wait_disconnect(scope, receive, send, query):
    await read_body(receive)
    message = await receive()  # blocks until the client goes away
    EVENTS.append(f"wait-disconnect: {message['type']}")


async def slow_reader(scope, receive, send, query):
    total = 0
    while True:
        await asyncio.sleep(float(query.get("delay", "0.01")))
        message = await receive()
        total += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await respond(send, 200, str(total).encode())


async def stalled_reader(scope, receive, send, query):
    """Takes the first body message, reads nothing for t seconds, then the rest."""
    message = await receive()
    total = len(message.get("body", b""))
    await asyncio.sleep(float(query.get("t", "1")))
    while message.get("more_body"):
        message = await receive()
        total += len(message.get("body", b""))
    await respond(send, 200, str(total).encode())


async def sleep(scope, receive, send, query):
    await asyncio.sleep(float(query.get("t", "1")))
    await respond(send, 200, b"slept")


async def events(scope, receive, send, query):
    await respond(send, 200, json.dumps(EVENTS).encode(), content_type=b"application/json")


async def pid(scope, receive, send, query):
    await respond(send, 200, str(os.getpid()).encode())


async def stream_forever(scope, receive, send, query):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        while True:
            await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
            await asyncio.sleep(0.05)
    except OSError as exc:
        EVENTS.append(f"stream-forever: {type(exc).__name__}")


FIREHOSE = {"sent": 0}


async def firehose(scope, receive, send):
    """Streams 64 MiB; FIREHOSE['sent'] shows how far send() got while the client was not reading."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    chunk = b"f" * 65536
    for _ in range(1024):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        FIREHOSE["sent"] += len(chunk)
    await send({"type": "http.response.body", "body": b""})


async def firehose_progress(scope, receive, send, query):
    await respond(send, 200, str(FIREHOSE["sent"]).encode())


ROUTES = {
    "/": hello,
    "/echo": echo,
    "/scope": scope_view,
    "/stream": stream,
    "/big": big,
    "/status": status,
    "/raise-early": raise_early,
    "/raise-late": raise_late,
    "/no-response": no_response,
    "/start-only": start_only,
    "/cl-short": content_length_short,
    "/cl-long": content_length_long,
    "/bad-header": bad_header,
    "/split-twin": split_twin,
    "/header-shapes": header_shapes,
    "/bad-header-name": bad_header_name,
    "/custom-headers": custom_headers,
    "/send-after-complete": send_after_complete,
    "/app-closes": app_closes,
    "/wait-disconnect": wait_disconnect,
    "/slow-reader": slow_reader,
    "/stalled-reader": stalled_reader,
    "/sleep": sleep,
    "/events": events,
    "/pid": pid,
    "/stream-forever": stream_forever,
    "/päth": hello,
    "/scope/€ x": scope_view,
    "/firehose": lambda scope, receive, send, query: firehose(scope, receive, send),
    "/firehose-progress": firehose_progress,
}
