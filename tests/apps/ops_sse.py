"""Server-sent events with sse-starlette (tests/test_ops_drain.py)."""

from __future__ import annotations

import asyncio

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.routing import Route


async def ticks():
    count = 0
    while True:
        yield {"data": f"tick {count}"}
        count += 1
        await asyncio.sleep(0.1)


async def events(request):
    return EventSourceResponse(ticks())


app = Starlette(routes=[Route("/sse", events)])

