"""A real fastserve process on an ephemeral port, and small raw-socket helpers."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
IMPLS = [("httptools", "asyncio"), ("httptools", "uvloop"), ("h11", "asyncio"), ("h11", "uvloop")]
IMPL_IDS = [f"{http}-{loop}" for http, loop in IMPLS]
_RUNNING = re.compile(r"running on (https?)://([^ ]+):(\d+)")
# httpx builds a TLS context (loading a CA bundle: ~50 ms of CPU) for every new client, httpx.get()
# included, even for http:// URLs; the suite makes about a thousand one-off requests. They share one.
_CLIENT_TLS = ssl.create_default_context()


def http_get(url: str, **kwargs) -> httpx.Response:
    """httpx.get: a new client, so a new connection, without building a new TLS context."""
    kwargs.setdefault("verify", _CLIENT_TLS)
    return httpx.get(url, **kwargs)


class ServerProcess:
    """``python -m fastserve APP --port 0 ...``; waits for the 'running on' line to learn the port."""

    def __init__(self, app: str, *args: str, env: dict | None = None, cwd: str | Path | None = None,
                 app_dir: str | Path | None = TESTS, command: list[str] | None = None, wait_for: str | None = "running on") -> None:
        self.app = app
        self.args = list(args)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = str(cwd or ROOT)
        self.app_dir = app_dir
        self.command = command
        self.wait_for = wait_for
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.port: int | None = None
        self.scheme = "http"
        self._changed = threading.Condition()
        self._drained = threading.Event()

    def start(self, timeout: float = 20.0) -> ServerProcess:
        if self.command is not None:
            cmd = self.command
        else:
            cmd = [sys.executable, "-m", "fastserve", self.app, *self.args]
            if self.app_dir is not None and "--app-dir" not in self.args:
                cmd += ["--app-dir", str(self.app_dir)]
            if not any(a in self.args for a in ("--port", "--uds", "--fd")):
                cmd += ["--port", "0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self.env, cwd=self.cwd, start_new_session=True)
        threading.Thread(target=self._drain, daemon=True).start()
        if self.wait_for is not None:
            try:
                self.wait_for_line(self.wait_for, timeout)
            except BaseException:
                self._kill()  # never leave a server behind when it failed to start
                raise
            match = next((m for m in map(_RUNNING.search, self.lines) if m), None)
            if match:
                self.scheme, self.port = match.group(1), int(match.group(3))
        return self

    def _drain(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        self._drained.set()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, text: str, timeout: float = 10.0, start: int = 0) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if text in line:
                        return line
                if self.proc.poll() is not None and self._drained.is_set():
                    raise AssertionError(f"server exited ({self.proc.returncode}) before {text!r}:\n{self.output}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {text!r} within {timeout}s:\n{self.output}")
                self._changed.wait(min(remaining, 0.2))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"server did not stop within {timeout}s:\n{self.output}") from None
        self._drained.wait(5)
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def raw_request(port: int, data: bytes, timeout: float = 5.0, host: str = "127.0.0.1", shut_write: bool = False) -> bytes:
    """Send raw bytes, read until the server closes (or the timeout), return all bytes read."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock, timeout)


class BatchSender:
    """Sends ``batch`` again and again on a non-blocking socket, a partial send finished before
    the next batch (sending the whole batch again after one cuts a frame or a request in two)."""

    def __init__(self, sock: socket.socket, batch: bytes) -> None:
        self.sock = sock
        self.batch = memoryview(batch)
        self.unsent = memoryview(b"")
        self.sent = 0  # bytes the socket took in all

    def send(self) -> None:
        """One send(); raises as socket.send() does (BlockingIOError when the socket is full)."""
        data = self.unsent or self.batch
        written = self.sock.send(data)
        self.unsent = data[written:]
        self.sent += written


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else -1


def tls_certificate(folder: Path) -> tuple[str, str, ssl.SSLContext]:
    """(key file, certificate chain file, a client context that trusts it) for 127.0.0.1, from a
    throwaway CA, written into ``folder``."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key, chain = folder / "key.pem", folder / "cert.pem"
    cert.private_key_pem.write_to_path(key)
    cert.cert_chain_pems[0].write_to_path(chain)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return str(key), str(chain), context
