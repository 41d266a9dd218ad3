"""Responses for clients that stop reading (tests/test_write_timeout.py): each sends until its
send() raises, then prints what it saw (the test reads the server's output).

- ``/stream``: 64 KiB body chunks for ever; ``/file?path=P``: Starlette's FileResponse (pathsend);
- ``/big?size=N``: N bytes in one body message (the transport holds them all: paused for long);
- WebSocket (any path): 64 KiB messages for ever; ``/hello``: a plain response.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.responses import FileResponse

CHUNK = b"x" * 64 * 1024


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await push_messages(receive, send)
    elif scope["type"] != "http":
        return
    elif scope["path"] == "/stream":
        await stream_for_ever(send)
    elif scope["path"] == "/big":
        size = int(parse_qs(scope["query_string"].decode())["size"][0])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % size)]})
        await send({"type": "http.response.body", "body": b"y" * size})
    elif scope["path"] == "/file":
        path = parse_qs(scope["query_string"].decode())["path"][0]
        try:
            await FileResponse(path)(scope, receive, send)
        except OSError as exc:
            print(f"app: file send raised {type(exc).__name__}", flush=True)
            raise
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello"})


async def stream_for_ever(send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    try:
        while True:
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
    except OSError as exc:
        print(f"app: stream send raised {type(exc).__name__}", flush=True)
        raise


async def push_messages(receive, send):
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    try:
        while True:
            await send({"type": "websocket.send", "bytes": CHUNK})
    except OSError as exc:
        print(f"app: websocket send raised {type(exc).__name__}", flush=True)
        raise
