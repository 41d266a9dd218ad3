"""The lifespan protocol as the test apps answer it: every event completes."""


async def complete_lifespan(receive, send) -> None:
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return
