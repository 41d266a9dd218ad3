"""Slow clients, floods, soaks and shutdown under load, against a real server: bounded resources,
nobody stuck, nothing leaked. Long variants run with `make soak`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time

import httpx
import pytest
import websockets

from .helpers import ServerProcess, http_get


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(predicate, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.1)


@pytest.fixture
def reliability_server(serve, impl):
    http, loop = impl
    return serve("apps.reliability:app", "--http", http, "--loop", loop, "--no-access-log",
                 "--timeout-request-header", "2", "--timeout-keep-alive", "5")


def test_slowloris_does_not_starve_normal_clients(reliability_server):
    server = reliability_server

    async def trickler(results):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        status_line = asyncio.create_task(asyncio.wait_for(reader.readline(), 10))
        try:
            for i in range(20):  # one header line every 0.3 s: the head never completes
                if status_line.done():
                    break
                await asyncio.sleep(0.3)
                writer.write(b"X-%d: v\r\n" % i)
                await writer.drain()
        except ConnectionError:
            pass  # closed by the server while we were still trickling
        line = await status_line
        results.append(line.split(b" ", 2)[1] if line else b"closed")
        writer.close()

    async def main():
        results: list[bytes] = []
        tricklers = [asyncio.create_task(trickler(results)) for _ in range(500)]
        await asyncio.sleep(0.5)
        latencies = []
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            for _ in range(20):
                started = time.monotonic()
                assert (await client.get("/")).status_code == 200
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.05)
        await asyncio.gather(*tricklers)
        return results, latencies

    results, latencies = asyncio.run(main())
    assert max(latencies) < 0.5, latencies
    assert len(results) == 500 and set(results) == {b"408"}  # every slow head closed by the timeout
    wait_until(lambda: open_fds(server.proc.pid) < 40, 10, "slowloris connections not released")


def test_flood_of_connections_releases_fds_and_memory(reliability_server):
    server = reliability_server
    pid = server.proc.pid
    http_get(server.url)
    fds_before, rss_before = open_fds(pid), rss_kib(pid)

    async def client(i):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"ok"), 30)
        return writer, head

    async def main():
        pairs = await asyncio.gather(*(client(i) for i in range(2000)))
        assert all(head.startswith(b"HTTP/1.1 200") for _, head in pairs)
        assert open_fds(pid) >= fds_before + 1995  # all 2,000 were open at once (give or take the warm-up one)
        for writer, _ in pairs:
            writer.close()

    asyncio.run(main())
    wait_until(lambda: open_fds(pid) <= fds_before + 2, 15, "file descriptors not released")
    assert rss_kib(pid) - rss_before < 40 * 1024, "RSS grew by more than 40 MiB"
    assert http_get(server.url).status_code == 200


def run_soak(server: ServerProcess, seconds: float, websocket_sessions: int) -> dict:
    """Keep-alive requests (wrk, or httpx where wrk is missing) mixed with WebSocket sessions."""
    pid = server.proc.pid
    http_get(server.url + "/")
    tasks_before = int(http_get(server.url + "/tasks").text)
    rss_before = rss_kib(pid)
    stats = {}

    async def websocket_session(i):
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
            await ws.send(f"hello {i}")
            assert await ws.recv() == f"hello {i}"

    async def websocket_load():
        done = 0
        semaphore = asyncio.Semaphore(50)

        async def one(i):
            nonlocal done
            async with semaphore:
                await websocket_session(i)
                done += 1

        await asyncio.gather(*(one(i) for i in range(websocket_sessions)))
        return done

    wrk = shutil.which("wrk")
    if wrk:
        load = subprocess.Popen([wrk, "-t1", "-c16", f"-d{seconds}s", server.url + "/"], stdout=subprocess.PIPE, text=True)
        stats["websocket_sessions"] = asyncio.run(websocket_load())
        out = load.communicate(timeout=seconds + 30)[0]
        stats["requests"] = int(out.split(" requests in ")[0].split()[-1])
        stats["errors"] = ("Non-2xx" in out) or ("Socket errors" in out)
    else:
        print("WARNING: wrk is not installed; the soak uses a slower httpx loop")
        deadline = time.monotonic() + seconds
        count = 0
        with httpx.Client(base_url=server.url) as client:
            while time.monotonic() < deadline:
                assert client.get("/").status_code == 200
                count += 1
        stats["requests"], stats["errors"] = count, False
        stats["websocket_sessions"] = asyncio.run(websocket_load())
    time.sleep(0.5)
    stats["tasks_growth"] = int(http_get(server.url + "/tasks").text) - tasks_before
    stats["objects"] = http_get(server.url + "/objects").json()
    stats["rss_growth_kib"] = rss_kib(pid) - rss_before
    return stats


def assert_connections_freed(objects: dict) -> None:
    """After the load, no WebSocket session survives a full collection; only the connection that
    asked for the count (and its request) is alive."""
    assert objects["WebSocketSession"] == 0 and objects["ServerProtocol"] == 0, objects
    assert objects["HTTPProtocol"] <= 2 and objects["RequestResponseCycle"] + objects["H1Cycle"] <= 2, objects


def test_closed_websocket_sessions_are_freed_at_once(reliability_server):
    async def sessions():
        for _ in range(30):
            async with websockets.connect(reliability_server.url.replace("http", "ws") + "/ws") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"

    http_get(reliability_server.url + "/gc-off")  # reference counting alone must free them
    try:
        asyncio.run(sessions())
        time.sleep(0.3)
    finally:
        objects = http_get(reliability_server.url + "/objects?collect=0").json()
    assert_connections_freed(objects)


def test_closed_connections_are_freed_without_the_cyclic_gc(reliability_server):
    # A connection leaves no reference cycle behind: reference counting frees it as it closes
    # (the cyclic GC would cost every new connection, as in the Connection: close benchmark).
    url = reliability_server.url
    http_get(url + "/gc-off")
    try:
        with httpx.Client(headers={"connection": "close"}) as closing:  # a new connection each time
            for path in ("/", "/sleep?t=0.01", "/", "/nothing"):
                for _ in range(10):
                    assert closing.get(url + path).status_code == 200
        with httpx.Client() as client:  # keep-alive connections, closed by the client
            for _ in range(10):
                assert client.get(url + "/").status_code == 200
        time.sleep(0.3)
    finally:
        objects = http_get(url + "/objects?collect=0").json()
    assert objects["HTTPProtocol"] <= 2 and objects["RequestResponseCycle"] + objects["H1Cycle"] <= 2, objects


def test_soak_short(reliability_server):
    stats = run_soak(reliability_server, seconds=3, websocket_sessions=200)
    assert stats["websocket_sessions"] == 200
    assert not stats["errors"], stats
    assert stats["tasks_growth"] <= 0, stats  # every request and WebSocket task finished
    assert_connections_freed(stats["objects"])
    assert stats["rss_growth_kib"] < 30 * 1024, stats


@pytest.mark.slow
@pytest.mark.parametrize("impl", [("httptools", "uvloop"), ("h11", "asyncio")], ids=["httptools-uvloop", "h11-asyncio"])
def test_soak_long(serve, impl):
    http, loop = impl
    server = serve("apps.reliability:app", "--http", http, "--loop", loop, "--no-access-log")
    stats = run_soak(server, seconds=30 if http == "httptools" else 60, websocket_sessions=2000)
    assert stats["requests"] >= 200_000 or http == "h11", stats
    assert stats["websocket_sessions"] == 2000
    assert not stats["errors"] and stats["tasks_growth"] <= 0, stats
    assert_connections_freed(stats["objects"])
    assert stats["rss_growth_kib"] < 50 * 1024, stats


def test_graceful_shutdown_under_load(serve, impl):
    http, loop = impl
    server = serve("apps.reliability:app", "--http", http, "--loop", loop, "--timeout-graceful-shutdown", "10")

    async def request(client):
        try:
            response = await client.get(server.url + "/sleep?t=2")
        except httpx.TransportError as exc:  # a clean close is acceptable, a hang is not
            return f"closed: {type(exc).__name__}"
        return response.status_code

    async def websocket():
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
            await ws.send("hi")
            await ws.recv()
            try:
                await asyncio.wait_for(ws.recv(), 20)
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    async def main():
        baseline = int(http_get(server.url + "/tasks").text)
        # One client (building one costs ~50 ms of TLS set-up) whose pool opens a connection per
        # request: 200 concurrent requests on 200 connections.
        async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=None)) as sleepers:
            requests = [asyncio.create_task(request(sleepers)) for _ in range(200)]
            sockets = [asyncio.create_task(websocket()) for _ in range(100)]
            async with httpx.AsyncClient(base_url=server.url) as client:
                # Each sleeping request and each open WebSocket holds a task in the server.
                while int((await client.get("/tasks")).text) < baseline + 300:
                    await asyncio.sleep(0.05)
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*requests)
            codes = await asyncio.gather(*sockets)
        return results, codes, started

    results, codes, started = asyncio.run(main())
    assert server.proc.wait(15) == 0
    assert time.monotonic() - started < 10
    assert all(r == 200 for r in results), [r for r in results if r != 200][:5]
    assert set(codes) == {1012}, codes
