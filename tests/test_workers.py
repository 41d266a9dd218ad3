"""--workers N: real supervisor and worker processes sharing one socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from .helpers import TESTS
from .process_tree import (
    exit_status,
    get,
    is_running,
    pids_serving,
    server_children,
    session_members,
    wait_for,
    with_inherited_socket,
)

pytestmark = pytest.mark.timeout(60)






def wait_for_workers(server, count: int, timeout: float = 15.0) -> list[int]:
    """The supervisor's worker pids, once exactly ``count`` of them are serving."""

    def serving():
        children = server_children(server.proc.pid)
        output = server.output
        if len(children) == count and all(f"Worker [{pid}] is serving" in output for pid in children):
            return children
        return None

    return wait_for(serving, timeout, message=f"{count} serving workers")


class ClientLoop:
    """Requests on fresh connections from a few threads until stopped; counts every failure."""

    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = url
        self.ok = 0
        self.errors: list[str] = []
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                r = get(self.url, timeout=10)
                outcome = None if r.status_code == 200 else f"status {r.status_code}"
            except httpx.HTTPError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            with self._lock:
                if outcome is None:
                    self.ok += 1
                    self.pids.add(int(r.text))
                else:
                    self.errors.append(outcome)

    def __enter__(self) -> ClientLoop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def test_two_workers_from_web_concurrency_serve_with_per_worker_lifespan(supervised):
    server = supervised("apps.workerapp:app", env={"WEB_CONCURRENCY": "2"})
    workers = wait_for_workers(server, 2)
    assert pids_serving(server, 2) == set(workers)
    for pid in workers:
        assert f"lifespan startup in pid {pid}" in server.output
    states = {}
    for _ in range(60):
        state = json.loads(get(server.url + "/state").text)
        states[state["pid"]] = state
        if len(states) == 2:
            break
    assert {s["lifespan_pid"] for s in states.values()} == set(workers)  # lifespan state is per worker
    assert sum(s["hits"] for s in states.values()) < 2 * len(states) + 60  # module state not shared


def test_killed_worker_is_replaced_and_logged(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2")
    first, second = wait_for_workers(server, 2)
    os.kill(first, signal.SIGKILL)
    server.wait_for_line(f"Worker [{first}] exited (killed by SIGKILL); starting a replacement")
    workers = wait_for_workers(server, 2)
    assert first not in workers and second in workers
    assert pids_serving(server, 2) == set(workers)


def test_sighup_rolls_every_worker_without_failing_a_request(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2")
    old = set(wait_for_workers(server, 2))
    in_flight: dict = {}
    slow = threading.Thread(target=lambda: in_flight.update(r=get(server.url + "/sleep?t=1.5", timeout=10)))
    with ClientLoop(server.url + "/pid") as clients:
        slow.start()
        time.sleep(0.3)
        os.kill(server.proc.pid, signal.SIGHUP)
        server.wait_for_line("Roll-over complete", timeout=20)
        new = set(wait_for_workers(server, 2))
        time.sleep(0.3)
    slow.join(10)
    assert not old & new, "every worker was replaced"
    assert clients.errors == [], clients.errors[:5]
    assert clients.ok > 20
    assert clients.pids & new, "the new workers served"
    assert in_flight["r"].status_code == 200 and in_flight["r"].text == "slept"  # old worker finished it


def test_sighup_with_a_broken_deploy_keeps_the_old_workers_serving(supervised, tmp_path):
    app = tmp_path / "deployed.py"
    app.write_text("import os\n\n\nasync def app(scope, receive, send):\n"
                   "    if scope['type'] == 'http':\n"
                   "        await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
                   "        await send({'type': 'http.response.body', 'body': str(os.getpid()).encode()})\n")
    server = supervised("deployed:app", "--workers", "2", "--lifespan", "off", app_dir=tmp_path)
    old = set(wait_for_workers(server, 2))
    good = app.read_text()
    app.write_text(good + "\ndef broken(:\n")
    os.kill(server.proc.pid, signal.SIGHUP)
    server.wait_for_line("Roll-over stopped")
    wait_for(lambda: set(server_children(server.proc.pid)) == old, 5, message="only the old workers left")
    assert pids_serving(server, 2) == old, "the old workers keep serving"
    app.write_text(good)
    os.kill(server.proc.pid, signal.SIGHUP)
    server.wait_for_line("Roll-over complete")
    new = set(wait_for_workers(server, 2))
    assert not new & old


def test_limit_max_requests_recycles_workers(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2", "--limit-max-requests", "3")
    first = set(wait_for_workers(server, 2))
    statuses = [get(server.url + "/pid").status_code for _ in range(12)]
    assert statuses == [200] * 12
    server.wait_for_line("(--limit-max-requests); shutting down gracefully")
    server.wait_for_line("exited (exit status 0); starting a replacement")
    later = set(wait_for_workers(server, 2))
    assert later - first, "recycled workers were replaced by new ones"


def test_limit_max_requests_jitter_stays_in_range(supervised):
    limits = set()
    for _ in range(2):
        server = supervised("apps.workerapp:app", "--limit-max-requests", "2", "--limit-max-requests-jitter", "4")
        served = 0
        while server.proc.poll() is None and served < 10:
            try:
                get(server.url + "/pid", timeout=2)
                served += 1
            except httpx.HTTPError:
                break
        assert exit_status(server, 10) == 0
        line = server.wait_for_line("(--limit-max-requests)")
        limit = int(line.split("Served ")[1].split()[0])
        assert 2 <= limit <= 6 and served == limit
        limits.add(limit)
    assert limits  # the jittered limit is drawn per process (random, so not asserted to differ)


def test_limit_max_requests_counts_websocket_sessions(supervised):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    server = supervised("apps.ws:app", "--limit-max-requests", "2")

    async def sessions() -> list[str]:
        outcomes = []
        for i in range(2):
            try:
                async with connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
                    await ws.send(f"hi {i}")
                    outcomes.append(await asyncio.wait_for(ws.recv(), 5))
            except ConnectionClosed as exc:
                outcomes.append(f"closed {exc.rcvd.code if exc.rcvd else None}")
        return outcomes

    first, second = asyncio.run(sessions())
    assert first == "hi 0"
    assert second in ("hi 1", "closed 1012")  # the session reaching the limit may be told to reconnect
    assert exit_status(server, 10) == 0
    assert "Served 2 requests (--limit-max-requests)" in server.output


def test_sigttin_adds_and_sigttou_removes_a_worker(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2")
    wait_for_workers(server, 2)
    os.kill(server.proc.pid, signal.SIGTTIN)
    three = wait_for_workers(server, 3)
    os.kill(server.proc.pid, signal.SIGTTOU)
    two = wait_for_workers(server, 2)
    assert set(two) < set(three)
    assert min(three) not in two  # the oldest worker is the one retired


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_finishes_requests_then_leaves_no_process(supervised, sig):
    server = supervised("apps.workerapp:app", "--workers", "2", "--timeout-graceful-shutdown", "5")
    workers = wait_for_workers(server, 2)
    result: dict = {}
    slow = threading.Thread(target=lambda: result.update(r=get(server.url + "/sleep?t=1", timeout=10)))
    slow.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert server.stop(sig) == 0
    slow.join(10)
    assert result["r"].text == "slept"
    assert time.monotonic() - started < 5
    for pid in workers:
        assert f"lifespan shutdown in pid {pid}" in server.output
        assert not is_running(pid)
    wait_for(lambda: not session_members(server.proc.pid), 5, message="no process left")


def test_graceful_shutdown_timeout_bounds_the_stop(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2", "--timeout-graceful-shutdown", "1")
    wait_for_workers(server, 2)
    hung = threading.Thread(target=lambda: _swallow(get, server.url + "/sleep?t=30", 30), daemon=True)
    hung.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.stop(signal.SIGTERM)
    assert time.monotonic() - started < 4
    assert "Graceful shutdown timed out" in server.output


def _swallow(fn, *args):
    try:
        fn(*args)
    except httpx.HTTPError:
        pass


def test_workers_share_a_unix_socket(supervised, tmp_path):
    path = str(tmp_path / "fs.sock")
    server = supervised("apps.workerapp:app", "--workers", "2", "--uds", path, wait_for="is serving")
    workers = wait_for_workers(server, 2)
    seen = set()
    for _ in range(60):
        with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
            seen.add(int(client.get("http://fastserve/pid", headers={"connection": "close"}).text))
        if len(seen) == 2:
            break
    assert seen == set(workers)
    assert server.stop() == 0
    assert not os.path.exists(path), "the supervisor removes the socket file it created"


def test_app_that_cannot_start_stops_the_supervisor(supervised):
    server = supervised("apps.no_such_module:app", "--workers", "2", wait_for=None)
    assert exit_status(server, 20) == 3  # the app could not be loaded (as uvicorn)
    server.wait_for_line('Could not import module "apps.no_such_module"')
    assert "failed to start" in server.output


def test_workers_share_a_socket_passed_as_fd(supervised):
    command = with_inherited_socket([sys.executable, "-m", "fastserve", "apps.workerapp:app", "--fd", "{fd}",
                                     "--workers", "2", "--app-dir", str(TESTS)])
    server = supervised("unused", command=command)
    workers = wait_for_workers(server, 2)
    assert pids_serving(server, 2) == set(workers)


def test_terminal_ctrl_c_reaches_the_whole_group_and_all_exit_cleanly(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2")
    workers = wait_for_workers(server, 2)
    os.killpg(server.proc.pid, signal.SIGINT)  # a terminal sends SIGINT to every process of the group
    assert exit_status(server, 15) == 0
    assert "Traceback" not in server.output
    for pid in workers:
        assert f"lifespan shutdown in pid {pid}" in server.output
    wait_for(lambda: not session_members(server.proc.pid), 5, message="no process left")


def test_second_ctrl_c_skips_the_graceful_wait(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2", "--timeout-graceful-shutdown", "30")
    wait_for_workers(server, 2)
    threading.Thread(target=_swallow, args=(get, server.url + "/sleep?t=30", 30), daemon=True).start()
    time.sleep(0.3)
    os.killpg(server.proc.pid, signal.SIGINT)
    server.wait_for_line("Waiting for 1 connection(s) to finish")
    started = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGINT)
    assert exit_status(server, 10) == 0
    assert time.monotonic() - started < 3
    assert "Second interrupt" in server.output


def test_app_object_that_cannot_reach_the_workers_is_refused_plainly():
    code = "import fastserve; raise SystemExit(fastserve.run(lambda scope, receive, send: None, workers=2, port=0))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert "Pass it as an import string" in result.stderr
