"""Process-tree checks for supervisor tests: walk /proc (no psutil) by session and parent."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ...": comm may contain spaces; split after the last ')'
    return [str(pid), text[text.index("(") + 1:text.rindex(")")], *text[text.rindex(")") + 2:].split()]


def _live(fields: list[str] | None) -> bool:
    return fields is not None and fields[2] not in ("Z", "X")


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    return _live(_stat_fields(pid))


def session_members(sid: int) -> list[int]:
    """Live processes whose session id is ``sid`` (servers are started with start_new_session)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if _live(fields) and fields[5] == str(sid):
                members.append(int(entry.name))
    return members


def children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if _live(fields) and fields[3] == str(pid):
                children.append(int(entry.name))
    return children


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def server_children(pid: int) -> list[int]:
    """The server processes under a supervisor (not multiprocessing's resource tracker)."""
    return sorted(c for c in children_of(pid) if "resource_tracker" not in cmdline(c))


def wait_for(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout}s")
        time.sleep(interval)


def exit_status(server, timeout: float) -> int:
    """Wait for the server to exit on its own, and for its output to be fully read."""
    server.proc.wait(timeout)
    return server.stop()


def kill_session(sid: int) -> list[int]:
    """SIGKILL whatever is left in the session; returns the pids that were still running."""
    survivors = session_members(sid)
    for pid in survivors:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return survivors


class Supervised:
    """Starts supervisor-style servers (fastserve --workers/--reload, gunicorn) and, at teardown,
    stops them and checks that no process of theirs is left: survivors are killed and reported."""

    def __init__(self) -> None:
        self.servers: list = []

    def start(self, app: str, *args: str, **kwargs):
        from .helpers import ServerProcess

        server = ServerProcess(app, *args, **kwargs)
        self.servers.append(server)
        return server.start(timeout=30.0)

    def cleanup(self) -> list[str]:
        problems = []
        for server in self.servers:
            if server.proc is None:
                continue
            try:
                server.stop(timeout=20)
            except AssertionError as exc:
                problems.append(str(exc)[:2000])
            sid = server.proc.pid
            try:
                wait_for(lambda sid=sid: not session_members(sid), timeout=5, message="session empty")
            except AssertionError:
                survivors = kill_session(sid)
                problems.append(f"processes left after the server stopped: {[cmdline(p) for p in survivors]}")
        return problems


def with_inherited_socket(argv: list[str]) -> list[str]:
    """A command that binds a TCP socket on an ephemeral port, then execs ``argv`` with the
    socket's fd inherited; ``{fd}`` in ``argv`` is replaced by its number (for --fd / fd://)."""
    import sys

    launcher = (
        "import os, socket, sys\n"
        "s = socket.socket()\n"
        "s.bind(('127.0.0.1', 0))\n"
        "s.listen(128)\n"
        "os.set_inheritable(s.fileno(), True)\n"
        "argv = [a.replace('{fd}', str(s.fileno())) for a in sys.argv[1:]]\n"
        "os.execv(argv[0], argv)\n"
    )
    return [sys.executable, "-c", launcher, *argv]


def get(url: str, timeout: float = 5.0, **kwargs) -> httpx.Response:
    """One request on a fresh connection, so the kernel may hand it to any worker."""
    # Deliberately httpx.get, not helpers.http_get: the max-requests tests (test_workers,
    # test_gunicorn) pass only with the ~50 ms a new TLS context puts between requests; without it
    # the worker that reached its limit answers the next request too (a race, reported).
    return httpx.get(url, headers={"connection": "close", **kwargs.pop("headers", {})}, timeout=timeout, **kwargs)


def pids_serving(server, count: int, attempts: int = 60) -> set[int]:
    """The worker pids seen answering /pid, until ``count`` distinct ones have answered."""
    seen: set[int] = set()
    for _ in range(attempts):
        seen.add(int(get(server.url + "/pid").text))
        if len(seen) >= count:
            break
    return seen
