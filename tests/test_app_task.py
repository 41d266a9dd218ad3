"""The app runs inside its own asyncio Task from its first line.

Apps rely on it: anyio task groups (Starlette's BaseHTTPMiddleware, FastAPI's middleware decorator,
sse-starlette) and asyncio.timeout() fail with current_task() None. An eager start that ran the
app's first step outside any Task answered 500 to every such request.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import httpx
import pytest

from .helpers import ROOT


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


_EAGER_CHECK = """
import asyncio
from fastserve.http1.connection import new_task

async def main():
    async def app():
        return asyncio.current_task()
    task = new_task(app(), asyncio.get_running_loop())
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
