"""Apps for loading and lifespan tests."""

from __future__ import annotations

import json
import os


async def _json(send, data, status=200):
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(data).encode()})


class ASGI2App:
    """ASGI 2: constructed with the scope, then called with receive and send."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] == "http":
            await _json(send, {"interface": "asgi2"})


def create_app():
    async def app(scope, receive, send):
        if scope["type"] == "http":
            await _json(send, {"factory": True, "env": os.environ.get("FASTSERVE_TEST_VALUE")})

    return app


class Nested:
    class Inner:
        @staticmethod
        async def app(scope, receive, send):
            if scope["type"] == "http":
                await _json(send, {"nested": True})


async def lifespan_fails(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database is unreachable"})
        return


async def lifespan_raises(scope, receive, send):
    if scope["type"] == "lifespan":
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")
    await _json(send, {"ok": True, "state": dict(scope.get("state", {}))})


async def lifespan_records(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["counter"] = 0
                await send({"type": "lifespan.startup.complete"})
            else:
                print("LIFESPAN SHUTDOWN RAN", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    # Per-request state is a shallow copy: changes made by one request do not leak to the next.
    scope["state"]["counter"] += 1
    await _json(send, {"counter": scope["state"]["counter"]})
