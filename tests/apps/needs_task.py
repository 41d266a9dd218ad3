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
_seen_tasks: list = []  # every request's Task, kept alive so that no two can share an id


async def context_app(scope, receive, send):
    """Answers what the previous request on this process left in a context variable (it must be
    nothing), and whether this request's Task is a new one."""
    if scope["type"] != "http":
        return
    before = request_var.get()
    request_var.set(scope["path"])
    task = asyncio.current_task()
    new_task = task is not None and all(task is not seen for seen in _seen_tasks)
    _seen_tasks.append(task)
    body = f"{before} {'new-task' if new_task else 'reused-task'}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
