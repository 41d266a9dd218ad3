"""--workers N --reuse-port: each worker slot listens on its own SO_REUSEPORT socket.

Checked on real processes: how many listening sockets the kernel has for the port (/proc/net/tcp),
that a burst of connections opened at once reaches every worker, and that the slots follow the
pool through a killed worker, a roll-over (SIGHUP) and a smaller pool (SIGTTOU): no listening
socket is left that no worker serves, so no connection waits in a queue nobody reads.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .process_tree import pids_serving, wait_for
from .test_workers import ClientLoop, wait_for_workers

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT groups are Linux's"),
]


def listening_sockets(port: int) -> int:
    """The kernel's listening sockets on 127.0.0.1:port (each once, however many fds share it)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            count += 1
    return count


def port_of(server) -> int:
    return urlsplit(server.url).port


def burst_pids(port: int, connections: int = 32) -> list[int]:
    """Open ``connections`` at once, then ask /pid on each: which worker accepted each one."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(connections)]

    def ask(sock: socket.socket) -> int:
        with sock:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        return int(data.partition(b"\r\n\r\n")[2])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(ask, socks))


def wait_for_listeners(port: int, count: int) -> None:
    wait_for(lambda: listening_sockets(port) == count or None, 10, message=f"{count} listening sockets")


def test_each_worker_has_its_own_socket_and_a_burst_reaches_both(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2", "--reuse-port")
    workers = wait_for_workers(server, 2)
    port = port_of(server)
    assert listening_sockets(port) == 2
    pids = burst_pids(port)
    assert set(pids) == set(workers), pids  # 32 connections hashed across two sockets: both get some
    assert "Each worker listens on its own socket (--reuse-port)" in server.output


def test_without_reuse_port_the_workers_share_one_socket(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2")
    wait_for_workers(server, 2)
    assert listening_sockets(port_of(server)) == 1


def test_a_killed_workers_replacement_serves_its_slot(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2", "--reuse-port")
    first, second = wait_for_workers(server, 2)
    port = port_of(server)
    os.kill(first, signal.SIGKILL)
    server.wait_for_line(f"Worker [{first}] exited (killed by SIGKILL); starting a replacement")
    # Connections the kernel hashes to the dead worker's socket wait in its queue meanwhile.
    workers = wait_for_workers(server, 2)
    assert listening_sockets(port) == 2
    assert set(burst_pids(port)) == set(workers)
    assert first not in workers


def test_roll_over_keeps_one_socket_per_worker_and_fails_no_request(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2", "--reuse-port")
    old = set(wait_for_workers(server, 2))
    port = port_of(server)
    with ClientLoop(server.url + "/pid") as clients:
        os.kill(server.proc.pid, signal.SIGHUP)
        server.wait_for_line("Roll-over complete", timeout=20)
        new = set(wait_for_workers(server, 2))
    assert clients.errors == [], clients.errors[:5]
    assert not old & new
    assert listening_sockets(port) == 2
    assert set(burst_pids(port)) == new


def test_sigttou_closes_the_retired_slot_and_sigttin_opens_one(supervised):
    server = supervised("apps.workerapp:app", "--workers", "2", "--reuse-port")
    wait_for_workers(server, 2)
    port = port_of(server)
    os.kill(server.proc.pid, signal.SIGTTOU)  # retires the oldest worker: slot 0, the parent's own socket
    [survivor] = wait_for_workers(server, 1)
    wait_for_listeners(port, 1)
    assert set(burst_pids(port)) == {survivor}  # every connection answered: none queued on a dead slot
    os.kill(server.proc.pid, signal.SIGTTIN)
    workers = wait_for_workers(server, 2)
    wait_for_listeners(port, 2)
    assert pids_serving(server, 2) == set(workers)


def test_a_unix_socket_is_shared_and_the_log_says_why(supervised, tmp_path):
    path = str(tmp_path / "fs.sock")
    server = supervised("apps.workerapp:app", "--workers", "2", "--reuse-port", "--uds", path, wait_for="is serving")
    wait_for_workers(server, 2)
    assert "--reuse-port needs TCP sockets bound by fastserve; the workers share one socket" in server.output
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
