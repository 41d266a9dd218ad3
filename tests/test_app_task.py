"""The app runs inside its own asyncio Task from its first line.

Apps rely on it: anyio task groups (Starlette's BaseHTTPMiddleware, FastAPI's middleware decorator,
sse-starlette) and asyncio.timeout() fail with current_task() None. An eager start that ran the
app's first step outside any Task answered 500 to every such request.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import httpx
import pytest

from .helpers import ROOT, raw_request


@pytest.mark.parametrize("app, body", [
    ("apps.needs_task:starlette_app", "ok"),
    ("apps.needs_task:fastapi_app", '{"ok":true}'),
    ("apps.needs_task:timeout_app", "task"),
])
def test_app_runs_inside_a_task_from_its_first_line(serve, impl, app, body):
    if sys.version_info < (3, 11) and app.endswith("timeout_app"):
        pytest.skip("asyncio.timeout is Python 3.11+")
    http, loop = impl
    server = serve(app, "--http", http, "--loop", loop)
    with httpx.Client() as client:
        for _ in range(3):  # the first request on a connection and the ones after it
            r = client.get(server.url + "/")
            assert r.status_code == 200 and r.text == body
    assert "ERROR" not in server.output


def test_each_request_has_its_own_task_and_context(serve, impl):
    """A context variable one request sets is not seen by the next on the same connection
    (keep-alive, then pipelined in one write), and every request runs in a Task that runs no
    other request meanwhile: an app that waits before answering, or goes on after it (the next
    request then starts in another Task), included. (On Python 3.11 an idle keep-alive
    connection's Task runs its next request: see HTTPProtocol._serve.)"""
    http, loop = impl
    server = serve("apps.needs_task:context_app", "--http", http, "--loop", loop)
    paths = ["/keep-alive-0", "/wait-1", "/keep-alive-2", "/linger-3", "/keep-alive-4", "/wait-5", "/keep-alive-6"]
    with httpx.Client() as client:
        bodies = [client.get(server.url + path).text for path in paths]
    pipelined = b"".join(
        b"GET /%s-%d HTTP/1.1\r\nHost: x\r\n%s\r\n"
        % (b"wait" if i == 1 else b"linger" if i == 2 else b"pipelined", i, b"connection: close\r\n" if i == 4 else b"")
        for i in range(5)
    )
    answer = raw_request(server.port, pipelined)
    bodies += re.findall(rb"\r\n\r\n([a-z-]+ [a-z-]+)", answer)
    assert [body if isinstance(body, str) else body.decode() for body in bodies] == ["unset own-task"] * 12
    assert "ERROR" not in server.output and "Traceback" not in server.output


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout and Task.cancelling are Python 3.11+")
def test_a_cancel_meant_for_one_request_does_not_reach_the_next(serve, impl):
    """An app that cancels its own Task and swallows it, a timeout that fired, a cancel that
    lands after the response: the next request on the connection starts with no cancel pending,
    its own asyncio.timeout works, and it is answered."""
    http, loop = impl
    server = serve("apps.needs_task:cancel_app", "--http", http, "--loop", loop)
    paths = ["/plain", "/swallow", "/plain", "/timeout", "/plain", "/late", "/plain", "/late-wait", "/plain", "/plain"]
    with httpx.Client() as client:
        bodies = [client.get(server.url + path).text for path in paths]
    assert bodies == [f"{path} 0 timeout" for path in paths]
    assert "ERROR" not in server.output and "Traceback" not in server.output


_EAGER_CHECK = """
import asyncio
import contextvars
from fastserve.http1.connection import new_task

async def main():
    async def app():
        return asyncio.current_task()
    task = new_task(app(), asyncio.get_running_loop(), contextvars.copy_context())
    assert task.done(), "3.12+: the first step runs at once"
    assert task.result() is task, "inside its own Task"
    print("eager ok")

asyncio.run(main())
"""


def python_312_or_later() -> str | None:
    """A runnable Python 3.12+ (this one, one on PATH, or one pyenv installed), if there is one."""
    if sys.version_info >= (3, 12):
        return sys.executable
    candidates = [shutil.which(name) for name in ("python3.13", "python3.12")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python")))
    for python in filter(None, candidates):
        check = subprocess.run([python, "-c", "import sys; assert sys.version_info >= (3, 12)"], capture_output=True)
        if check.returncode == 0:  # (a pyenv shim for a version that is not selected fails here)
            return python
    return None


def test_eager_start_on_python_312_runs_in_its_task():
    python = python_312_or_later()
    if python is None:
        pytest.skip("SKIPPED LOUDLY: no Python 3.12+ here to check the eager Task start (new_task)")
    result = subprocess.run([python, "-c", _EAGER_CHECK], capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    if "No module named" in result.stderr:
        pytest.skip(f"SKIPPED LOUDLY: {python} lacks a dependency of fastserve.http1.connection: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0 and "eager ok" in result.stdout, result.stderr
