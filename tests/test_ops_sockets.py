"""systemd socket activation (LISTEN_FDS) and --uds-perms."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys

import httpx
import pytest

from .conftest import free_port
from .helpers import TESTS, ServerProcess, raw_request, status_of

ACTIVATE = shutil.which("systemd-socket-activate")


def fastserve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fastserve", "apps.ops:app", "--app-dir", str(TESTS), *args]


@pytest.fixture
def started():
    servers: list[ServerProcess] = []
    yield servers.append
    for server in servers:
        server.stop(signal.SIGTERM)


def test_systemd_socket_activate(started):
    if ACTIVATE is None:
        pytest.skip("SKIPPED LOUDLY: systemd-socket-activate is not installed (apt-get install systemd); "
                    "test_listen_fds_without_systemd covers LISTEN_FDS")
    port = free_port()
    server = ServerProcess("", command=[ACTIVATE, "-l", f"127.0.0.1:{port}", *fastserve_command()], wait_for="Listening on")
    server.start()
    started(server)
    # systemd-socket-activate starts fastserve on the first connection, with the socket as fd 3.
    assert status_of(raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=20)) == 200
    server.wait_for_line("Using 1 socket(s) from systemd (LISTEN_FDS)")
    server.wait_for_line(f"running on http://127.0.0.1:{port}")
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "hello"
    assert server.stop(signal.SIGTERM) == 0


# What systemd does, by hand: a listening socket as fd 3, LISTEN_FDS=1, LISTEN_PID = the server's pid.
SYSTEMD_LIKE = (
    "import os, socket, sys; listener = socket.create_server(('127.0.0.1', 0)); os.dup2(listener.fileno(), 3); os.set_inheritable(3, True); "
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


@pytest.mark.parametrize("workers", [(), ("--workers", "2")], ids=["single", "workers"])
def test_listen_fds_without_systemd(started, workers):
    command = [sys.executable, "-c", SYSTEMD_LIKE, *fastserve_command("--port", "1", *workers)[1:]]  # --port is not used
    server = ServerProcess("", command=command)
    server.start()
    started(server)
    assert "Using 1 socket(s) from systemd (LISTEN_FDS)" in server.output
    assert server.port not in (None, 1)
    assert httpx.get(server.url + "/").text == "hello"
    assert server.stop(signal.SIGTERM) == 0


def test_listen_fds_for_another_process_is_ignored(serve):
    # LISTEN_PID names another process (a parent that did not unset it): bind as usual.
    server = serve("apps.ops:app", env={"LISTEN_FDS": "1", "LISTEN_PID": "1"})
    assert "systemd" not in server.output
    assert httpx.get(server.url + "/").text == "hello"


def test_uds_perms_and_the_socket_file_removed_at_shutdown(serve, tmp_path):
    path = str(tmp_path / "fastserve.sock")
    server = serve("apps.ops:app", "--uds", path, "--uds-perms", "660", wait_for="running on unix socket")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        assert client.get("http://localhost/").text == "hello"
    assert server.stop(signal.SIGTERM) == 0
    assert not os.path.exists(path)


def test_uds_perms_default_and_validation(serve, tmp_path):
    path = str(tmp_path / "default.sock")
    serve("apps.ops:app", "--uds", path, wait_for="running on unix socket")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    result = subprocess.run(fastserve_command("--uds", path + "2", "--uds-perms", "999"), capture_output=True, text=True)
    assert result.returncode == 2 and "--uds-perms: must be an octal mode such as 660; got '999'" in result.stderr
