"""Apps that need asyncio.current_task() from their first line, as real apps do."""

import asyncio
import contextvars

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def home(request):
    return PlainTextResponse("ok")


class PassThrough(BaseHTTPMiddleware):  # anyio task group around every request
    async def dispatch(self, request, call_next):
        return await call_next(request)


starlette_app = Starlette(routes=[Route("/", home)], middleware=[])
starlette_app.add_middleware(PassThrough)

fastapi_app = FastAPI()


@fastapi_app.middleware("http")
async def add_header(request, call_next):
    response = await call_next(request)
    response.headers["x-middleware"] = "yes"
    return response


@fastapi_app.get("/")
async def fastapi_home():
    return {"ok": True}


async def timeout_app(scope, receive, send):
    if scope["type"] != "http":
        return
    async with asyncio.timeout(5):  # "Timeout should be used inside a task"
        task = asyncio.current_task()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"task" if task is not None else b"none"})


request_var = contextvars.ContextVar("request_var", default="unset")
_running: set = set()  # the Tasks running a request now


async def context_app(scope, receive, send):
    """Answers what the previous request on this process left in a context variable (it must be
    nothing), and whether this request runs in a Task of its own ("own-task": a Task that runs
    no other request meanwhile). /wait-* waits before answering, /linger-* after (it still runs
    when the next request on its connection starts)."""
    if scope["type"] != "http":
        return
    before = request_var.get()
    request_var.set(scope["path"])
    task = asyncio.current_task()
    own = task is not None and task not in _running
    _running.add(task)
    try:
        if scope["path"].startswith("/wait"):
            await asyncio.sleep(0.01)
        body = f"{before} {'own-task' if own else 'shared-task'}".encode()
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if scope["path"].startswith("/linger"):
            await asyncio.sleep(0.2)
        assert request_var.get() == scope["path"]  # its own, whatever ran meanwhile
    finally:
        _running.discard(task)


async def cancel_app(scope, receive, send):
    """Cancels of one request must not reach the next on the connection. /swallow cancels its own
    Task and swallows the CancelledError; /timeout lets an asyncio.timeout expire and catches it;
    /late answers, then arms a cancel of its Task and returns (the cancel lands after it);
    /late-wait does the same, then waits (the cancel lands in it). Every request reports how
    many cancels its Task has pending when it starts, and whether its own timeout works."""
    if scope["type"] != "http":
        return
    task = asyncio.current_task()
    pending = task.cancelling()
    path = scope["path"]
    if path == "/swallow":
        task.cancel()
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            pass
    try:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
        timed = "no-timeout"
    except TimeoutError:
        timed = "timeout"
    await asyncio.sleep(0.02)  # a cancel meant for this request would arrive here, or in the next
    assert asyncio.current_task() is task  # one Task all along (a failure is a 500 and an ERROR line)
    body = f"{path} {pending} {timed}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
    if path.startswith("/late"):
        asyncio.get_running_loop().call_soon(task.cancel)
        if path == "/late-wait":
            await asyncio.sleep(1)  # cancelled here: the Task ends as cancelled, the response is out
