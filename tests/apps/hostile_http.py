"""An app for the hostile-client tests: pipelining floods, slow body readers, body types."""

from __future__ import annotations

import asyncio


async def respond(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def echo_query(scope, receive, send) -> None:
    """Answers with the query string, so a client can check the order of pipelined answers;
    ``?...&yield`` awaits once first, so the response is not complete when the app returns to
    the server (the request then waits in a Task and the requests behind it queue)."""
    query = scope["query_string"]
    if query.endswith(b"yield"):
        await asyncio.sleep(0)
    await respond(send, query)


async def body_types(scope, receive, send) -> None:
    """Answers with the type name of each request body message, comma-separated."""
    names = []
    while True:
        message = await receive()
        names.append(type(message.get("body")).__name__)
        if not message.get("more_body", False):
            break
    await respond(send, ",".join(names).encode())


async def echo_body(scope, receive, send) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await respond(send, body)


async def slow_reader(scope, receive, send) -> None:
    """Reads the body a little at a time, then keeps calling receive() (as apps watching for a
    disconnect do) for ``?seconds`` before answering."""
    size = 0
    more = True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
        await asyncio.sleep(0.005)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + float(scope["query_string"] or 1)
    while loop.time() < deadline:
        try:
            message = await asyncio.wait_for(receive(), 0.05)
        except asyncio.TimeoutError:
            continue
        if message["type"] == "http.disconnect":
            return
    await respond(send, b"%d" % size)


async def websocket_echo(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
        else:
            return


ROUTES = {"/n": echo_query, "/echo": echo_body, "/body-types": body_types, "/slow": slow_reader}


async def app(scope, receive, send) -> None:
    if scope["type"] == "websocket":
        return await websocket_echo(scope, receive, send)
    if scope["type"] != "http":
        return  # lifespan: nothing to set up
    await ROUTES[scope["path"]](scope, receive, send)
