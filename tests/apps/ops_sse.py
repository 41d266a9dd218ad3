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


def without_eager_start():
    """The same app with the app's first step run in a Task. fastserve runs it eagerly outside any
    Task on Python 3.11+, where anyio's task groups (sse-starlette) fail: asyncio.current_task()
    is None. Reported separately; this lets the drain be tested with sse-starlette meanwhile."""
    import fastserve.http.protocol

    fastserve.http.protocol.EAGER_START = False
    return app
