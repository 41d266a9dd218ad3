"""--reload: a real supervisor watching a temporary project, restarting its server process."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from fastserve.supervisors.reload import ReloadFilter

from .helpers import http_get
from .process_tree import (
    exit_status,
    is_running,
    server_children,
    session_members,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)

APP = '''\
import os
import time


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/hang":
        time.sleep(60)  # blocks the event loop: the process ignores SIGTERM until killed
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version} " + str(os.getpid()).encode()}})
'''


def write_app(project: Path, version: str, name: str = "app.py") -> None:
    (project / name).write_text(APP.format(version=version))


@pytest.fixture
def project(tmp_path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    write_app(path, "v1")
    return path


def start_reloader(supervised, project: Path, *args: str):
    return supervised("app:app", "--reload", "--reload-delay", "0.1", *args, cwd=project, app_dir=project)


def version(server, timeout: float = 2.0) -> str:
    return http_get(server.url + "/", headers={"connection": "close"}, timeout=timeout).text.split()[0]


def wait_for_version(server, expected: str, within: float) -> float:
    """Seconds until ``expected`` is served; fails if that takes longer than ``within``."""
    started = time.monotonic()
    while True:
        try:
            if version(server, timeout=max(0.2, within - (time.monotonic() - started))) == expected:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > within:
            raise AssertionError(f"{expected} not served within {within}s:\n{server.output}")
        time.sleep(0.05)


def test_edit_is_served_within_3s_on_the_same_socket(supervised, project):
    server = start_reloader(supervised, project)
    assert version(server) == "v1"
    [first_child] = server_children(server.proc.pid)
    write_app(project, "v2")
    assert wait_for_version(server, "v2", within=3.0) < 3.0
    reload_line = server.lines.index(server.wait_for_line("detected changes in 'app.py'. Reloading..."))
    server.wait_for_line("running on", start=reload_line)  # the new process, on the same socket
    assert not is_running(first_child)
    assert "already in use" not in server.output


def test_syntax_error_is_shown_and_the_next_good_save_recovers(supervised, project):
    server = start_reloader(supervised, project)
    assert version(server) == "v1"
    (project / "app.py").write_text("def broken(:\n    pass\n")
    server.wait_for_line("SyntaxError")
    server.wait_for_line("fix the error and save: watching for changes")
    assert server.proc.poll() is None, "the supervisor keeps running"
    write_app(project, "v3")
    wait_for_version(server, "v3", within=5.0)


def test_exclude_and_include_patterns(supervised, project):
    for folder in ("__pycache__", ".venv", "pkg"):
        (project / folder).mkdir()
    server = start_reloader(supervised, project, "--reload-exclude", "ignored_*.py", "--reload-include", "*.txt")
    assert version(server) == "v1"
    [child] = server_children(server.proc.pid)
    ignored = ["ignored_one.py", ".hidden.py", "__pycache__/cached.py", ".venv/lib.py", "notes.md", "app.pyc"]
    for name in ignored:
        (project / name).write_text("x = 1\n")
    time.sleep(1.5)  # several watcher steps (--reload-delay 0.1)
    assert "Reloading" not in server.output
    assert server_children(server.proc.pid) == [child]
    (project / "data.txt").write_text("an included extension\n")
    server.wait_for_line("detected changes in 'data.txt'", timeout=5)
    (project / "pkg" / "module.py").write_text("y = 2\n")  # *.py below the root is watched
    server.wait_for_line("detected changes in 'pkg/module.py'", timeout=5)


def test_a_server_process_that_stops_on_its_own_is_started_again(supervised, project):
    server = start_reloader(supervised, project, "--limit-max-requests", "2")
    pids = {version_and_pid(server)[1] for _ in range(4)}
    server.wait_for_line("exited; starting a new one")
    assert len(pids) == 2


def version_and_pid(server) -> tuple[str, int]:
    text, pid = httpx.get(server.url + "/", headers={"connection": "close"}, timeout=5).text.split()
    return text, int(pid)


def test_sigint_stops_supervisor_and_server_leaving_no_process(supervised, project):
    server = start_reloader(supervised, project)
    [child] = server_children(server.proc.pid)
    assert len(session_members(server.proc.pid)) >= 2
    assert server.stop(signal.SIGINT) == 0
    assert not is_running(child)
    wait_for(lambda: not session_members(server.proc.pid), 5, message="every process of the session exited")


def test_server_process_exits_when_the_supervisor_is_killed(supervised, project):
    server = start_reloader(supervised, project)
    [child] = server_children(server.proc.pid)
    os.kill(server.proc.pid, signal.SIGKILL)
    wait_for(lambda: not is_running(child), 5, message="orphaned server process exited")
    wait_for(lambda: not session_members(server.proc.pid), 5, message="every process of the session exited")


def test_terminal_ctrl_c_stops_supervisor_and_server_cleanly(supervised, project):
    server = start_reloader(supervised, project)
    assert version(server) == "v1"
    os.killpg(server.proc.pid, signal.SIGINT)  # a terminal sends SIGINT to every process of the group
    assert exit_status(server, 10) == 0
    assert "Traceback" not in server.output
    wait_for(lambda: not session_members(server.proc.pid), 5, message="every process of the session exited")


def test_stat_polling_fallback_without_watchfiles(supervised, project, tmp_path):
    shadow = tmp_path / "no_watchfiles"
    (shadow / "watchfiles").mkdir(parents=True)
    (shadow / "watchfiles" / "__init__.py").write_text("raise ImportError('watchfiles hidden for this test')\n")
    server = supervised("app:app", "--reload", "--reload-delay", "0.1", cwd=project, app_dir=project,
                        env={"PYTHONPATH": str(shadow)})
    server.wait_for_line("using StatReload")
    assert version(server) == "v1"
    time.sleep(0.1)  # a different mtime even on coarse-grained file systems
    write_app(project, "v2")
    wait_for_version(server, "v2", within=3.0)


def test_hung_app_does_not_block_a_reload(supervised, project):
    server = start_reloader(supervised, project)
    assert version(server) == "v1"
    threading.Thread(target=_get_quietly, args=(server.url + "/hang",), daemon=True).start()
    time.sleep(0.5)
    write_app(project, "v2")
    wait_for_version(server, "v2", within=9.0)
    server.wait_for_line("did not stop within")


def _get_quietly(url: str) -> None:
    try:
        httpx.get(url, timeout=30)
    except httpx.HTTPError:
        pass


def test_programmatic_reload_watches_an_app_dir_outside_the_cwd(supervised, project, tmp_path):
    launcher = tmp_path / "launcher"
    launcher.mkdir()
    (launcher / "run.py").write_text(textwrap.dedent("""\
        import sys

        import fastserve

        if __name__ == "__main__":
            sys.exit(fastserve.run("app:app", reload=True, app_dir=sys.argv[1], port=0, reload_delay=0.1))
    """))
    command = [sys.executable, str(launcher / "run.py"), str(project)]
    server = supervised("unused", command=command, cwd=launcher)
    assert version(server) == "v1"
    write_app(project, "v2")
    wait_for_version(server, "v2", within=3.0)


# -- the file filter alone ------------------------------------------------------------------------
@pytest.fixture
def accept(tmp_path):
    def make(includes=("*.py",), excludes=()):
        from fastserve.config import default_of

        rf = ReloadFilter([str(tmp_path)], [*default_of("reload_includes"), *includes], [*default_of("reload_excludes"), *excludes])
        return lambda rel: rf(str(tmp_path / rel))

    return make


def test_filter_defaults(accept):
    watched = accept()
    assert watched("app.py") and watched("pkg/sub/mod.py")
    for name in ("app.pyc", ".hidden.py", ".git/hooks/x.py", "__pycache__/m.py", ".venv/lib/x.py",
                 "venv/x.py", "README.md", "app.py~"):
        assert not watched(name), name


def test_filter_user_patterns_extend_the_defaults(accept):
    watched = accept(includes=("*.html", ".env"), excludes=("migrations", "*_test.py"))
    assert watched("templates/index.html") and watched("app.py") and watched(".env")
    assert not watched("app/migrations/0001.py") and not watched("app_test.py")
    assert not watched(".venv/site.html"), "excluded directories stay excluded"
    only_html = accept(includes=("*.html",), excludes=("*.py",))
    assert only_html("a.html") and not only_html("a.py")
