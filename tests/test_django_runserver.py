"""``manage.py runserver`` with "fastserve.django" in INSTALLED_APPS, started as a user would: a
copy of tests/apps/djsite (``django-admin startproject`` plus the seed's Channels app), a real
port, real clients."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from .helpers import TESTS, ServerProcess, http_get
from .test_websocket_django import CHROMIUM, page_debugger_url

pytest.importorskip("django")
pytest.importorskip("channels")

PROJECT = TESTS / "apps" / "djsite"
ADMIN_CSS = "/static/admin/css/base.css"
TEXT = "你好! héllo ✓ 🚀"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A migrated copy of the project, so tests can edit its files."""
    root = tmp_path_factory.mktemp("djsite") / "djsite"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3"))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=root, check=True, timeout=60)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def runserver(project: Path, *args: str, debug: bool = True, addrport: str | None = None) -> Iterator[ServerProcess]:
    addrport = addrport or f"127.0.0.1:{free_port()}"
    command = [sys.executable, "manage.py", "runserver", addrport, *args]
    env = {"DJANGO_DEBUG": "1" if debug else "0"}
    server = ServerProcess("", command=command, cwd=project, env=env).start(timeout=30)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.output  # Ctrl+C stops it, children included


def echo(url: str, message: str) -> dict:
    async def exchange() -> dict:
        async with connect(url) as ws:
            await ws.send(json.dumps({"message": message}))
            return json.loads(await ws.recv())

    return asyncio.run(asyncio.wait_for(exchange(), 10))


def test_page_static_files_and_websocket_in_debug(project):
    with runserver(project) as server:
        page = httpx.get(server.url + "/")
        css = httpx.get(server.url + ADMIN_CSS)
        reply = echo(f"ws://127.0.0.1:{server.port}/ws/index/", TEXT)
    assert page.status_code == 200 and "'/ws/index/'" in page.text and page.headers["server"] == "fastserve"
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert reply["message"] == TEXT and reply["user"] == "AnonymousUser"
    # Django's banner and checks, once per server process
    for line in ("Performing system checks...", "System check identified no issues",
                 "Django version", "using settings 'mysite.settings'",
                 "Starting ASGI/fastserve version", f"development server at http://127.0.0.1:{server.port}/",
                 "Quit the server with CONTROL-C.", "Started reloader process"):
        assert line in server.output


def test_browser_opens_the_start_page_and_its_websocket(project, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"SKIPPED LOUDLY: chromium not found at {CHROMIUM} (apt-get install chromium)")
    with runserver(project, "--noreload") as server:
        status, shown = asyncio.run(asyncio.wait_for(read_page(server.url + "/", tmp_path), 60))
    assert (status, shown) == ("echoed", TEXT)  # the page sends TEXT over ws://.../ws/index/ and shows the echo
    assert 'GET /ws/index/ HTTP/1.1" 101' in server.output


async def read_page(url: str, tmp_path: Path) -> tuple[str | None, str | None]:
    """Headless Chromium opens the page; the DevTools protocol polls what its script wrote."""
    profile = tmp_path / "chromium-profile"
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        async with connect(await page_debugger_url(profile / "DevToolsActivePort", browser), max_size=None) as devtools:
            status = shown = None
            deadline = time.monotonic() + 45  # a loaded 2-core machine starts Chromium slowly
            while time.monotonic() < deadline and status not in ("echoed", "error") and not (status or "").startswith("closed"):
                await asyncio.sleep(0.1)
                status, shown = await page_texts(devtools)
            return status, shown
    finally:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()


async def page_texts(devtools) -> tuple[str | None, str | None]:
    """The status and echo elements' texts; (None, None) while the page is not there yet (an
    error reply or an exception: the page is still loading)."""
    expression = "[document.getElementById('status').textContent, document.getElementById('echo').textContent]"
    await devtools.send(json.dumps({"id": 1, "method": "Runtime.evaluate",
                                    "params": {"expression": expression, "returnByValue": True}}))
    while True:
        reply = json.loads(await devtools.recv())
        if reply.get("id") == 1:
            value = reply.get("result", {}).get("result", {}).get("value")
            return tuple(value) if isinstance(value, list) else (None, None)


@pytest.mark.parametrize(("args", "served"), [((), False), (("--insecure",), True)], ids=["default", "insecure"])
def test_static_files_without_debug_only_with_insecure(project, args, served):
    with runserver(project, "--noreload", *args, debug=False) as server:
        css = httpx.get(server.url + ADMIN_CSS)
        page = httpx.get(server.url + "/")
    assert css.status_code == (200 if served else 404)
    assert page.status_code == 200
    assert "Started reloader process" not in server.output  # --noreload: served in this process


def test_nostatic_in_debug(project):
    with runserver(project, "--noreload", "--nostatic") as server:
        assert httpx.get(server.url + ADMIN_CSS).status_code == 404


def test_ipv6(project):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    port = free_port()
    server = ServerProcess("", command=[sys.executable, "manage.py", "runserver", "-6", str(port), "--noreload"],
                           cwd=project, wait_for="running on").start(timeout=30)
    try:
        response = httpx.get(f"http://[::1]:{port}/")
    finally:
        server.stop()
    assert response.status_code == 200
    assert f"development server at http://[::1]:{port}/" in server.output


class KeepConnecting(threading.Thread):
    """A client that keeps opening connections (GET /) and records what happened to each."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.greetings: list[str] = []
        self.failures: list[str] = []
        self.longest = 0.0  # seconds: a request made while no process accepted waits in the backlog

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                response = http_get(self.url + "/", timeout=10)  # a new connection each time
                self.longest = max(self.longest, time.monotonic() - started)
                self.greetings.append(response.text.split('<p id="greeting">')[1].split("<")[0])
            except Exception as exc:
                self.failures.append(repr(exc))
            time.sleep(0.02)

    def wait_for(self, greeting: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while greeting not in self.greetings[-1:]:
            assert time.monotonic() < deadline, f"never served {greeting!r}; failures: {self.failures[:3]}"
            time.sleep(0.05)


def set_greeting(project: Path, old: str, new: str) -> None:
    views = project / "chat" / "views.py"
    views.write_text(views.read_text().replace(old, new))


def test_reload_keeps_the_socket_and_recovers_from_a_syntax_error(project):
    views = project / "chat" / "views.py"
    original = views.read_text()
    with runserver(project) as server:
        client = KeepConnecting(server.url)
        try:
            client.start()
            client.wait_for("version 1")
            set_greeting(project, "'version 1'", "'version 2'")
            client.wait_for("version 2")
            client.stop.set()
            client.join(15)
            assert client.failures == []  # not one refused connection during the reload
            # and it did connect while the old process was gone: that request waited for the new one
            # (starting a process with Django takes far longer than this)
            assert client.longest > 0.2
            assert "Reloading" in server.output

            mark = len(server.lines)
            views.write_text(original.replace("def index(request):", "def index(request)"))
            server.wait_for_line("SyntaxError", timeout=20, start=mark)
            assert "views.py" in server.output
            server.wait_for_line("watching for changes", timeout=20, start=mark)

            mark = len(server.lines)
            views.write_text(original.replace("'version 1'", "'version 3'"))
            server.wait_for_line("running on", timeout=20, start=mark)
            assert "version 3" in httpx.get(server.url + "/").text
            assert echo(f"ws://127.0.0.1:{server.port}/ws/index/", "after the fix")["message"] == "after the fix"
        finally:
            client.stop.set()
            views.write_text(original)


def test_port_in_use_is_one_line_and_an_exit_status(project):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "manage.py", "runserver", str(port)], cwd=project,
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: That port is already in use."


def test_port_zero_picks_a_free_port_and_says_which(project):
    with runserver(project, "--noreload", addrport="127.0.0.1:0") as server:
        assert httpx.get(server.url + "/").status_code == 200
    assert f"development server at http://127.0.0.1:{server.port}/" in server.output
