"""``gunicorn -k fastserve.workers.Worker``: a real gunicorn arbiter with fastserve workers."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port
from .helpers import TESTS, raw_request, read_until_closed, status_of
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

pytest.importorskip("gunicorn", reason="gunicorn is not installed: pip install 'fastserve[gunicorn]'")
pytestmark = pytest.mark.timeout(60)

GUNICORN = str(Path(sys.executable).parent / "gunicorn")


@pytest.fixture
def gunicorn(supervised):
    def start(*args: str, app: str = "workerapp:app", worker: str = "fastserve.workers.Worker", bind: str = "127.0.0.1:0",
              wait_for: str | None = "running on"):
        command = [GUNICORN, "-k", worker, "--no-control-socket", "--chdir", str(TESTS / "apps"),
                   "-b", bind, *args, app]
        return supervised(app, command=command, wait_for=wait_for)

    return start




def wait_for_workers(server, count: int, timeout: float = 15.0, exclude: set[int] = frozenset()) -> list[int]:
    """The arbiter's worker pids, once ``count`` of them (none in ``exclude``) are listening."""

    def serving():
        workers = server_children(server.proc.pid)
        if len(workers) != count or set(workers) & exclude:
            return None
        listening = {line.split("]")[1].strip(" [") for line in server.lines if "running on" in line}
        return workers if all(str(pid) in listening for pid in workers) else None

    return wait_for(serving, timeout, message=f"{count} gunicorn workers serving")




def test_two_workers_serve_http_with_lifespan_per_worker_and_gunicorn_settings(gunicorn):
    server = gunicorn(
        "-w", "2", "--access-logfile", "-", "--access-logformat", "ACCESS %(m)s %(U)s %(s)s %({x-probe}i)s",
        "--limit-request-line", "100", "--limit-request-fields", "10", "--limit-request-field_size", "200",
        "--forwarded-allow-ips", "*",
        "--keep-alive", "1",
    )
    workers = wait_for_workers(server, 2)
    assert pids_serving(server, 2) == set(workers)
    states = {}
    for _ in range(60):
        state = json.loads(get(server.url + "/state").text)
        states[state["pid"]] = state
        if len(states) == 2:
            break
    assert {s["lifespan_pid"] for s in states.values()} == set(workers)
    for pid in workers:
        assert f"lifespan startup in pid {pid}" in server.output

    get(server.url + "/state", headers={"x-probe": "seen-by-gunicorn-logger"})
    server.wait_for_line("ACCESS GET /state 200 seen-by-gunicorn-logger")
    scope = json.loads(get(server.url + "/scope", headers={"x-forwarded-for": "203.0.113.7"}).text)
    assert scope["client"][0] == "203.0.113.7"
    long_line = b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert status_of(raw_request(server.port, long_line)) == 414
    many_fields = b"GET /pid HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(12)) + b"\r\n"
    assert status_of(raw_request(server.port, many_fields)) == 431
    big_section = b"GET /pid HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n"  # > 10 x 200
    assert status_of(raw_request(server.port, big_section)) == 431

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:  # --keep-alive 1
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        response = read_until_closed(sock, timeout=5)
    assert status_of(response) == 200
    assert 0.5 < time.monotonic() - started < 3, "the idle connection was closed after about 1s"


def test_h11_worker_over_tls_and_a_unix_socket(gunicorn, tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    uds = str(tmp_path / "g.sock")
    server = gunicorn("-w", "1", "-b", f"unix:{uds}", "--certfile", str(certfile), "--keyfile", str(keyfile),
                      worker="fastserve.workers.H11Worker")
    assert server.scheme == "https"
    r = httpx.get(f"https://127.0.0.1:{server.port}/pid", verify=ssl.create_default_context(cafile=str(cafile)), timeout=5)
    assert r.status_code == 200 and int(r.text) in server_children(server.proc.pid)
    with httpx.Client(transport=httpx.HTTPTransport(uds=uds, verify=ssl.create_default_context(cafile=str(cafile)))) as client:
        assert client.get("https://localhost/scope").json()["scheme"] == "https"


@pytest.mark.parametrize("worker", ["fastserve.workers.Worker", "fastserve.workers.H11Worker"])
def test_websocket_and_http_on_two_workers(gunicorn, worker):
    from websockets.asyncio.client import connect

    server = gunicorn("-w", "2", "--access-logfile", "-", app="ws:app", worker=worker)
    wait_for_workers(server, 2)

    async def echo_round(count: int) -> list[str]:
        replies = []
        for i in range(count):
            async with connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
                await ws.send(f"hello {i} ✓")
                replies.append(await asyncio.wait_for(ws.recv(), 5))
        return replies

    assert asyncio.run(echo_round(4)) == [f"hello {i} ✓" for i in range(4)]
    assert get(server.url + "/anything").text == "http:"
    server.wait_for_line('"GET /ws/echo HTTP/1.1" 101')  # the handshake, through gunicorn's access log


def test_log_level_is_gunicorns(supervised):
    port = free_port()
    command = [GUNICORN, "-k", "fastserve.workers.Worker", "--no-control-socket", "--chdir", str(TESTS / "apps"),
               "-b", f"127.0.0.1:{port}", "-w", "1", "--log-level", "warning", "--access-logfile", "-",
               "--access-logformat", "ACCESS %(U)s", "workerapp:app"]
    server = supervised("unused", command=command, wait_for=None)
    server.port = port
    wait_for(lambda: _answers(server.url + "/pid"), 15, message="gunicorn serving")
    server.wait_for_line("ACCESS /pid")  # written after any startup message of that worker
    assert "lifespan startup in pid" in server.output  # the app's own print, not a log record
    assert "running on" not in server.output and "Application startup complete" not in server.output


def _answers(url: str) -> bool:
    try:
        return get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_lifespan_startup_failure_stops_gunicorn_instead_of_respawning(gunicorn):
    server = gunicorn("-w", "2", app="variants:lifespan_fails", wait_for=None)
    assert exit_status(server, 20) != 0
    assert "Worker failed to boot" in server.output
    assert server.output.count("Booting worker") <= 2, "no respawn loop"


def test_gunicorn_reload_restarts_the_worker_on_a_change(supervised, tmp_path):
    app = tmp_path / "edited.py"
    body = "async def app(scope, receive, send):\n" \
           "    if scope['type'] == 'http':\n" \
           "        await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n" \
           "        await send({'type': 'http.response.body', 'body': b'%s'})\n"
    app.write_text(body % "one")
    command = [GUNICORN, "-k", "fastserve.workers.Worker", "--no-control-socket", "--chdir", str(tmp_path),
               "-b", "127.0.0.1:0", "--reload", "edited:app"]
    server = supervised("edited:app", command=command)
    assert get(server.url + "/").text == "one"
    time.sleep(1.1)  # gunicorn's polling reloader compares mtimes
    app.write_text(body % "two")
    wait_for(lambda: _body(server.url + "/") == "two", 10, interval=0.2, message="reloaded app")


def _body(url: str) -> str | None:
    try:
        return get(url, timeout=2).text
    except httpx.HTTPError:
        return None


def test_bind_to_an_inherited_fd(supervised):
    command = with_inherited_socket([GUNICORN, "-k", "fastserve.workers.Worker", "--no-control-socket",
                                     "--chdir", str(TESTS / "apps"), "-b", "fd://{fd}", "-w", "1", "workerapp:app"])
    server = supervised("unused", command=command)
    [worker] = wait_for_workers(server, 1)
    assert int(get(server.url + "/pid").text) == worker


def test_sigterm_finishes_requests_and_exits_within_graceful_timeout(gunicorn):
    server = gunicorn("-w", "2", "--graceful-timeout", "3")
    workers = wait_for_workers(server, 2)
    results: dict = {}

    def request(name: str, path: str) -> None:
        try:
            results[name] = get(server.url + path, timeout=30).text
        except httpx.HTTPError as exc:
            results[name] = type(exc).__name__

    threads = [threading.Thread(target=request, args=("short", "/sleep?t=0.5")),
               threading.Thread(target=request, args=("long", "/sleep?t=30"))]
    for t in threads:
        t.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    elapsed = time.monotonic() - started
    for t in threads:
        t.join(5)
    assert results["short"] == "slept"
    assert results["long"] != "slept"
    assert elapsed < 3 + 0.5, f"took {elapsed:.1f}s"
    for pid in workers:
        assert f"lifespan shutdown in pid {pid}" in server.output
    assert "was sent SIGKILL" not in server.output


def test_busy_worker_survives_timeout_and_a_blocked_one_is_aborted(gunicorn):
    server = gunicorn("-w", "1", "--timeout", "2", "-c", str(TESTS / "apps" / "gunicorn_hooks.py"))
    [worker] = wait_for_workers(server, 1)
    assert get(server.url + "/sleep?t=4", timeout=10).text == "slept"  # twice the timeout, loop alive
    assert "WORKER TIMEOUT" not in server.output
    assert server_children(server.proc.pid) == [worker]

    with pytest.raises(httpx.HTTPError):
        get(server.url + "/block?t=10", timeout=15)  # the event loop is stuck: the arbiter aborts it
    server.wait_for_line(f"WORKER TIMEOUT (pid:{worker})")
    server.wait_for_line(f"hook worker_abort {worker}")
    wait_for_workers(server, 1, exclude={worker})


def test_max_requests_recycles_the_worker(gunicorn):
    server = gunicorn("-w", "1", "--max-requests", "3")
    [first] = wait_for_workers(server, 1)
    pids = [int(get(server.url + "/pid").text) for _ in range(7)]
    assert pids[:3] == [first] * 3
    assert first not in pids[3:]
    server.wait_for_line("Served 3 requests (--limit-max-requests)")


def test_sighup_replaces_workers_and_sigint_runs_worker_int(gunicorn):
    server = gunicorn("-w", "2", "-c", str(TESTS / "apps" / "gunicorn_hooks.py"))
    old = wait_for_workers(server, 2)
    server.proc.send_signal(signal.SIGHUP)
    new = wait_for_workers(server, 2, exclude=set(old))
    assert pids_serving(server, 2) == set(new)
    for pid in new:
        server.wait_for_line(f"hook post_worker_init {pid}")
    started = time.monotonic()
    assert server.stop(signal.SIGINT) == 0
    assert time.monotonic() - started < 3
    for pid in new:
        assert f"hook worker_int {pid}" in server.output
        assert not is_running(pid)
    wait_for(lambda: not session_members(server.proc.pid), 5, message="no process left")


def test_gunicorn_http2_settings(gunicorn):
    """Gunicorn's http_protocols / http2_cleartext decide HTTP/2: h2 named with prior knowledge
    serves curl --http2-prior-knowledge; the Upgrade stays off (answered over HTTP/1.1)."""
    import shutil
    import subprocess

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    server = gunicorn("--http-protocols", "h2,h1", "--http2-cleartext", "prior-knowledge",
                      "--access-logfile", "-", "--access-logformat", "ACCESS %(r)s %(s)s")
    result = subprocess.run([curl, "-sS", "--max-time", "10", "--http2-prior-knowledge", server.url + "/pid"],
                            capture_output=True, timeout=20)
    assert result.returncode == 0, result.stderr
    server.wait_for_line("ACCESS GET /pid HTTP/2 200")
    result = subprocess.run([curl, "-sS", "-v", "--max-time", "10", "--http2", server.url + "/pid"],
                            capture_output=True, timeout=20)
    assert b"101" not in result.stderr and b"< HTTP/1.1 200" in result.stderr


def test_gunicorn_default_protocols_keep_http2_off():
    from gunicorn.config import Config as GunicornConfig

    from fastserve.workers import config_from_gunicorn

    cfg = GunicornConfig()
    assert config_from_gunicorn(cfg, "app:app", 0).http2 == "off"
    cfg.set("http_protocols", "h2,h1")
    cfg.set("http2_max_concurrent_streams", 50)
    config = config_from_gunicorn(cfg, "app:app", 0)
    assert (config.http2, config.http2_cleartext, config.http2_max_concurrent_streams) == ("on", "off", 50)
    assert config.http2_initial_window_size == 65535  # gunicorn's default: fastserve's own applies
