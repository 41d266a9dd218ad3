"""Work an app does after its response (as Starlette's BackgroundTasks run): GET /?t=SECONDS&mark=PATH
answers at once, then sleeps t seconds and writes "done" to PATH, or "cancelled" if cancelled."""

import asyncio
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    seconds, mark = float(query["t"][0]), query["mark"][0]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"sent"})
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        with open(mark, "w") as f:
            f.write("cancelled")
        raise
    with open(mark, "w") as f:
        f.write("done")
