"""The seed documents' stack on fastserve: Django + Channels (+ channels_redis), a plain Django
project that cannot take WebSockets, and a real browser running the seed's page."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .helpers import TESTS, ServerProcess

APPS = TESTS / "apps"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NON_ASCII = "你好! héllo ✓ 🚀"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def channels_server(*args: str, redis_url: str = "") -> ServerProcess:
    return ServerProcess("chatproject.asgi:application", *args, app_dir=APPS, env={"REDIS_URL": redis_url})


@pytest.fixture(scope="module")
def chat_server(module_impl):
    """The Channels project with the in-memory channel layer, on each parser x loop."""
    http, loop = module_impl
    server = channels_server("--http", http, "--loop", loop).start()
    yield server
    server.stop()


async def chat(url: str, message: str) -> dict:
    async with connect(url) as ws:
        await ws.send(json.dumps({"message": message}))
        return json.loads(await ws.recv())


def test_seed_index_consumer_echo(chat_server):
    reply = run(chat(f"ws://127.0.0.1:{chat_server.port}/ws/index/", NON_ASCII))
    assert reply == {"message": NON_ASCII, "user": "AnonymousUser"}  # AuthMiddlewareStack ran


def test_group_chat_with_in_memory_layer(chat_server):
    room = f"ws://127.0.0.1:{chat_server.port}/ws/chat/lobby/"

    async def scenario():
        async with connect(room) as alice, connect(room) as bob:
            await alice.send(json.dumps({"message": "hi bob"}))
            return json.loads(await alice.recv()), json.loads(await bob.recv())

    to_alice, to_bob = run(scenario())
    assert to_alice["message"] == to_bob["message"] == "hi bob"


def test_django_http_page_alongside(chat_server):
    with urllib.request.urlopen(f"http://127.0.0.1:{chat_server.port}/", timeout=5) as response:
        page = response.read().decode()
    assert "'/ws/index/'" in page and response.headers["content-type"].startswith("text/html")


def test_unrouted_websocket_path_is_500_and_logged(chat_server):
    start = len(chat_server.lines)

    async def scenario():
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{chat_server.port}/ws/nowhere/"):
                pass
        return info.value.response.status_code

    assert run(scenario()) == 500
    chat_server.wait_for_line("No route found for path", start=start)
    assert run(chat(f"ws://127.0.0.1:{chat_server.port}/ws/index/", "still up"))["message"] == "still up"


def test_group_chat_across_processes_with_channels_redis(redis_url):
    """Two fastserve processes (one per parser) share a room through a real redis-server."""
    first = channels_server("--http", "httptools", redis_url=redis_url).start()
    second = channels_server("--http", "h11", redis_url=redis_url).start()
    try:
        async def scenario():
            async with connect(f"ws://127.0.0.1:{first.port}/ws/chat/redis-room/") as alice, \
                       connect(f"ws://127.0.0.1:{second.port}/ws/chat/redis-room/") as bob:
                await alice.send(json.dumps({"message": NON_ASCII}))
                from_first = json.loads(await alice.recv())
                from_second = json.loads(await bob.recv())
                await bob.send(json.dumps({"message": "back at you"}))
                return from_first, from_second, json.loads(await alice.recv())

        to_alice, to_bob, reply = run(scenario())
    finally:
        first.stop()
        second.stop()
    assert to_alice["message"] == to_bob["message"] == NON_ASCII
    assert to_bob["sender_pid"] == first.proc.pid and to_bob["receiver_pid"] == second.proc.pid
    assert reply["message"] == "back at you" and reply["sender_pid"] == second.proc.pid


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_plain_django_answers_a_websocket_with_500_and_keeps_serving(serve, http):
    server = serve("plaindjango.asgi:application", "--http", http, app_dir=APPS)

    async def scenario():
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{server.port}/ws/index/"):
                pass
        return info.value.response.status_code

    assert run(scenario()) == 500
    line = server.wait_for_line("Django can only handle ASGI/HTTP connections, not websocket")
    assert "ValueError" in line
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5) as response:
        assert response.read() == b"plain django"


def test_browser_runs_the_seed_page_and_shows_the_echo(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"SKIPPED LOUDLY: chromium not found at {CHROMIUM}; install Debian's chromium package "
                    "(apt-get install chromium, or `make system-deps` as root) to run the browser test")
    server = channels_server().start()
    try:
        status, echo = run(read_page(f"http://127.0.0.1:{server.port}/", tmp_path))
    finally:
        server.stop()
    assert (status, echo) == ("echoed", NON_ASCII)  # the page sends NON_ASCII and shows the echo
    assert 'GET /ws/index/ HTTP/1.1" 101' in server.output


async def read_page(url: str, tmp_path, *flags: str) -> tuple[str, str]:
    """Headless Chromium opens the page; the DevTools protocol polls the elements its script fills."""
    profile = tmp_path / "chromium-profile"
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", *flags, url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        page = await page_debugger_url(profile / "DevToolsActivePort", browser)
        async with connect(page, max_size=None) as devtools:
            deadline = time.monotonic() + 45  # a loaded 2-core CI machine starts Chromium slowly
            status = echo = None
            while time.monotonic() < deadline:
                status, echo = await evaluate(devtools, "[document.getElementById('status').textContent,"
                                                       " document.getElementById('echo').textContent]")
                if status not in (None, "connecting", "open"):  # None: the page is still loading
                    break
                await asyncio.sleep(0.1)
            return status, echo
    finally:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()


async def page_debugger_url(port_file, browser) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            raise AssertionError(f"chromium exited with {browser.returncode}")
        if port_file.exists() and port_file.read_text().strip():
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                pages = [t for t in json.loads(response.read()) if t["type"] == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        await asyncio.sleep(0.1)
    raise AssertionError("chromium did not open its DevTools port")


async def evaluate(devtools, expression: str):
    await devtools.send(json.dumps({"id": 1, "method": "Runtime.evaluate",
                                    "params": {"expression": expression, "returnByValue": True}}))
    while True:
        reply = json.loads(await devtools.recv())
        if reply.get("id") == 1:
            return reply["result"]["result"].get("value") or [None, None]
