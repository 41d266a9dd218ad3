"""Apps for the first-run tests (tests/test_first_run.py): start-up mistakes and log lines."""

from __future__ import annotations

import asyncio

NOT_CALLABLE = {"this": "is a dict"}


def make_app():
    """A zero-argument factory given without --factory."""

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"from the factory"})

    return app


async def two_arguments(scope, receive):
    """Cannot take (scope, receive, send)."""


async def sleepy(scope, receive, send):
    """Answers after about 2 ms (for the access log's %(D)s)."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.002)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"slept"})


async def endless(scope, receive, send):
    """Streams until the client leaves; the server then raises ClientDisconnected on send."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    while True:
        await send({"type": "http.response.body", "body": b"tick\n" * 100, "more_body": True})
        await asyncio.sleep(0.01)


def _starlette_streaming():
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def ticks():
        while True:
            yield b"data: tick\n\n" * 100
            await asyncio.sleep(0.01)

    async def stream(request):
        return StreamingResponse(ticks(), media_type="text/event-stream")

    return Starlette(routes=[Route("/stream", stream)])


def starlette_streaming():
    """A factory, so importing this module does not need Starlette."""
    return _starlette_streaming()


async def websocket_wraps_disconnect(scope, receive, send):
    """Sends until the client is gone, then raises its own error from the disconnect (as
    frameworks do); the server must log it at debug only."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        try:
            await send({"type": "websocket.send", "bytes": b"x" * 1000})
        except OSError as exc:
            raise RuntimeError("the framework's own error") from exc
        await asyncio.sleep(0.01)


async def websocket_fails(scope, receive, send):
    """A real application error on an open WebSocket: still logged with its traceback."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    raise ValueError("a real bug")
