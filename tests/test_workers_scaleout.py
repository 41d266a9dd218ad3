"""Scale-out: a Django Channels group chat over a real redis-server channel layer, served by two
worker processes (fastserve --workers 2, and gunicorn -w 2). Every message must reach every
client, whichever worker holds each client's socket."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from .helpers import TESTS
from .process_tree import server_children, wait_for

pytest.importorskip("channels_redis", reason="channels_redis is not installed (pip install -e '.[dev]')")
websockets_client = pytest.importorskip("websockets.asyncio.client")
pytestmark = pytest.mark.timeout(90)

APPS = TESTS / "apps"
MAX_CLIENTS = 48  # connections opened until both workers hold at least one
BURST = 4  # connections opened concurrently per round


def start_chat(supervised, supervisor: str, redis_url: str):
    app = "chatproject.asgi:application"
    env = {"REDIS_URL": redis_url}
    if supervisor == "fastserve":
        return supervised(app, "--workers", "2", app_dir=APPS, env=env)
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    command = [gunicorn, "-k", "fastserve.workers.Worker", "--no-control-socket", "--chdir", str(APPS),
               "-w", "2", "-b", "127.0.0.1:0", app]
    return supervised(app, command=command, env=env)


def two_workers_listening(server) -> list[int]:
    def ready():
        workers = server_children(server.proc.pid)
        return workers if len(workers) == 2 and server.output.count("running on") >= 2 else None

    return wait_for(ready, 20, message="two workers listening")


async def recv_json(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def chat_room_across_workers(url: str) -> tuple[list[int], list[dict[str, dict]]]:
    """Clients join one by one, each announcing itself, until both workers hold a client; then
    every client sends one message. Returns each client's worker pid and what each received."""
    clients, client_pids = [], []
    try:
        while len(set(client_pids)) < 2 and len(clients) < MAX_CLIENTS:
            # Connect a burst at once: one at a time, the worker that just accepted is awake
            # first and may win every accept; concurrent connects make both workers race.
            # The consumer joins the room before accepting, so the whole burst hears each newcomer.
            burst = await asyncio.gather(*(websockets_client.connect(url) for _ in range(BURST)))
            clients.extend(burst)
            for ws in burst:
                name = f"join-{len(client_pids) + 1}"
                await ws.send(json.dumps({"message": name}))
                for index, client in enumerate(clients):
                    event = await recv_json(client)
                    assert event["message"] == name, f"client {index} got {event} instead of {name}"
                    if client is ws:
                        client_pids.append(event["receiver_pid"])  # the newcomer's own copy: its worker

        for index, ws in enumerate(clients):
            await ws.send(json.dumps({"message": f"from-{index}"}))
        received = []
        for ws in clients:
            events = [await recv_json(ws) for _ in clients]
            received.append({e["message"]: e for e in events})
        return client_pids, received
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


@pytest.mark.parametrize("supervisor", ["fastserve", "gunicorn"])
def test_group_chat_reaches_every_client_across_two_workers(supervised, redis_url, supervisor):
    if supervisor == "gunicorn":
        pytest.importorskip("gunicorn")
    server = start_chat(supervised, supervisor, redis_url)
    workers = two_workers_listening(server)
    url = f"ws://127.0.0.1:{server.port}/ws/chat/scaleout-{supervisor}/"
    client_pids, received = asyncio.run(asyncio.wait_for(chat_room_across_workers(url), 60))

    assert set(client_pids) == set(workers), "clients are spread over both workers"
    expected = {f"from-{i}" for i in range(len(client_pids))}
    for index, events in enumerate(received):
        assert set(events) == expected, f"client {index} missed {expected - set(events)}"
        assert {e["receiver_pid"] for e in events.values()} == {client_pids[index]}
    senders = {e["sender_pid"] for events in received for e in events.values()}
    assert senders == set(workers), "messages crossed from each worker to the other through redis"
