"""Hostile and careless WebSocket clients against a real server: each attack is bounded (server
RSS, a normal client's latency) and careless apps get clear errors."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from websockets.asyncio.client import connect

PARSERS = ["httptools", "h11"]


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def events(server) -> list[str]:
    with urllib.request.urlopen(f"{server.url}/events", timeout=5) as response:
        return json.loads(response.read())


# -- ASGI conformance of careless apps --------------------------------------------------------------
@pytest.mark.parametrize("http", PARSERS)
def test_send_with_both_text_and_bytes_is_an_error_in_the_app(serve, http):
    server = serve("apps.ws_hostile:app", "--http", http)

    async def scenario():
        async with connect(f"ws://127.0.0.1:{server.port}/ws/send-both") as ws:
            return await ws.recv()

    assert run(scenario()) == "done"
    assert events(server) == ["refused: RuntimeError"] * 3


@pytest.mark.parametrize("http", PARSERS)
def test_each_websocket_scope_has_its_own_asgi_and_extensions_dicts(serve, http):
    server = serve("apps.ws_hostile:app", "--http", http)

    async def scenario():
        seen = []
        for _ in range(2):
            async with connect(f"ws://127.0.0.1:{server.port}/ws/scope-write") as ws:
                seen.append(json.loads(await ws.recv()))
        return seen

    first, second = run(scenario())
    assert first == second, "what the first app wrote into its scope showed up in the next one"
    assert second["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert second["extensions"] == {"websocket.http.response": {}}
