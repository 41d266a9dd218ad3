"""Child-process plumbing shared by ``--reload`` and ``--workers``.

The parent binds the listening sockets once; every child serves those same sockets. A child is
started with multiprocessing's *spawn* method (a fresh interpreter, so edited code is imported
anew) and receives the sockets as duplicated file descriptors: restarting a child never re-binds,
so there is no "address already in use" window and the kernel queues connections meanwhile.

A child
- tells the parent it is serving through a one-way pipe (``ready``),
- shuts down gracefully on SIGTERM and at once on SIGQUIT, and ignores SIGINT: a terminal's
  Ctrl+C reaches the whole process group, and were children to act on it too, the supervisor's
  SIGTERM arriving first would make the terminal's SIGINT look like a second, forcing Ctrl+C.
  The supervisor turns Ctrl+C into SIGTERM, and a second one into SIGQUIT.
- shuts itself down if the parent dies (it watches the parent's sentinel), so it is never orphaned.

The parent side is event-driven: each child's exit and readiness are ``loop.add_reader`` callbacks
on the process sentinel and the readiness pipe.

Because children are spawned, a script calling ``fastserve.run(..., reload=True)`` or
``workers=N`` needs the usual ``if __name__ == "__main__":`` guard (the child imports the main
module again), and the application should be given as an import string.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import stat
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..logging import LevelFormatter, configure_logging
from ..server import Server, bind_error_message, run_coroutine
from ..server import bind_sockets as bind_listening_sockets

logger = logging.getLogger("fastserve.error")

SPAWN = multiprocessing.get_context("spawn")
WORKER_NAME = "fastserve-worker"  # the process name of --workers children (not --reload's)
# Lifespan shutdown runs after the connections' grace period; give it this long before SIGKILL.
SHUTDOWN_MARGIN = 5.0


# -- parent side --------------------------------------------------------------------------------
def bind_sockets(config: Config) -> list[socket.socket] | None:
    """Bind once in the parent; None (after logging why) when the address cannot be bound."""
    try:
        return bind_listening_sockets(config)
    except OSError as exc:
        logger.error("%s", bind_error_message(config, exc))
        return None


def supervise(config: Config, supervisor_class: Any) -> int:
    """Bind once in the parent, run the supervisor until it stops, release the sockets."""
    if not check_picklable(config):
        return 1
    sockets = bind_sockets(config)
    if sockets is None:
        return 1
    try:
        return asyncio.run(supervisor_class(config, sockets).run())
    finally:
        close_sockets(config, sockets)


def close_sockets(config: Config, sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
    if config.uds and _is_socket_file(config.uds):
        os.unlink(config.uds)


def _is_socket_file(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def check_picklable(config: Config) -> bool:
    """Children receive the config pickled; an app object defined in ``__main__`` or a lambda
    cannot cross. Say so plainly instead of failing deep inside multiprocessing."""
    try:
        pickle.dumps(config)
    except Exception as exc:
        logger.error(
            "Cannot hand the application to child processes (%s). Pass it as an import string, "
            'e.g. fastserve.run("package.module:app", ...).', exc
        )
        return False
    return True


def stop_deadline(config: Config) -> float:
    """Seconds a child gets to exit after SIGTERM before it is killed."""
    return config.shutdown_delay + config.timeout_graceful_shutdown + SHUTDOWN_MARGIN


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown status"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


class ChildProcess:
    """One server process. ``ready`` resolves True once it listens, False if it exits first;
    ``exited`` resolves to its exit code. ``on_exit(child)`` is called when it exits."""

    def __init__(self, config: Config, sockets: list[socket.socket], on_exit: Callable[[ChildProcess], None], name: str = "fastserve-server") -> None:
        self.config = config
        self.sockets = sockets
        self.on_exit = on_exit
        self.name = name
        self.slot = 0  # which of the supervisor's listening-socket slots it serves (--reuse-port)
        self.stop_requested = False
        self.process: Any = None
        self.pid: int | None = None
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[bool] = self._loop.create_future()
        self.exited: asyncio.Future[int | None] = self._loop.create_future()
        self._ready_reader: Any = None
        # When the child's event loop last ran (time.monotonic(), shared memory); 0 until serving.
        self.heartbeat = SPAWN.RawValue("d", 0.0)

    @property
    def exitcode(self) -> int | None:
        return self.exited.result() if self.exited.done() else None

    def start(self) -> ChildProcess:
        reader, writer = SPAWN.Pipe(duplex=False)
        self.process = SPAWN.Process(target=child_main, args=(self.config, self.sockets, writer, self.heartbeat), name=self.name)
        self.process.start()
        self.pid = self.process.pid
        writer.close()  # the child holds the only write end: EOF then means it exited
        self._ready_reader = reader
        self._loop.add_reader(reader.fileno(), self._on_ready_pipe)
        self._loop.add_reader(self.process.sentinel, self._on_sentinel)
        return self

    def _on_ready_pipe(self) -> None:
        reader, self._ready_reader = self._ready_reader, None
        self._loop.remove_reader(reader.fileno())
        try:
            reader.recv_bytes()
            listening = True
        except (EOFError, OSError):
            listening = False
        reader.close()
        if not self.ready.done():
            self.ready.set_result(listening)

    def _on_sentinel(self) -> None:
        self._loop.remove_reader(self.process.sentinel)
        self.process.join()  # the sentinel fires as the child exits; reaping is immediate
        if self._ready_reader is not None:
            self._on_ready_pipe()
        if not self.ready.done():
            self.ready.set_result(False)
        self.exited.set_result(self.process.exitcode)
        self.process.close()
        self.on_exit(self)

    def send_signal(self, sig: int) -> None:
        if not self.exited.done():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass  # exited already; the sentinel callback is on its way

    async def stop(self, timeout: float) -> int | None:
        """SIGTERM (graceful shutdown), then SIGKILL if the child is still there after ``timeout``."""
        self.stop_requested = True
        self.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self.exited), timeout)
        except asyncio.TimeoutError:
            logger.warning("Server process [%d] did not stop within %.1fs; killing it.", self.pid, timeout)
            self.send_signal(signal.SIGKILL)
            return await self.exited


def install_signal_handlers(handlers: dict[int, Callable[[int], None]]) -> None:
    loop = asyncio.get_running_loop()
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler, sig)


# -- child side ---------------------------------------------------------------------------------
class ChildServer(Server):
    """A Server that tells its supervisor when it is listening; signals as in the module doc."""

    handled_signals = (signal.SIGTERM,)

    def __init__(self, config: Config, ready_writer: Any, heartbeat: Any = None) -> None:
        super().__init__(config)
        self.ready_writer = ready_writer
        self.heartbeat = heartbeat

    def on_started(self) -> None:
        if self.heartbeat is not None:
            self._beat(heartbeat_interval(self.config), asyncio.get_running_loop())
        try:
            self.ready_writer.send_bytes(b"ready")
        except OSError:
            pass  # the supervisor is gone; the parent-sentinel watch stops us
        self.ready_writer.close()

    def _beat(self, interval: float, loop: asyncio.AbstractEventLoop) -> None:
        """Tell the supervisor the event loop runs: a blocked loop stops beating."""
        self.heartbeat.value = time.monotonic()
        loop.call_later(interval, self._beat, interval, loop)


def heartbeat_interval(config: Config) -> float:
    """How often a worker beats: often enough that one missed beat is far from the timeout."""
    return min(1.0, config.timeout_worker_healthcheck / 4)


def child_main(config: Config, sockets: list[socket.socket], ready_writer: Any, heartbeat: Any = None) -> None:
    """Entry point of a child process (runs in a freshly spawned interpreter)."""
    # Ignored also while the app is imported; a handler rather than SIG_IGN, which processes the
    # app starts would inherit.
    signal.signal(signal.SIGINT, _ignore_signal)
    if multiprocessing.current_process().name == WORKER_NAME:
        LevelFormatter.process_tag = f"[{os.getpid()}]"  # which worker wrote the line
    configure_logging(config)
    server = ChildServer(config, ready_writer, heartbeat if config.timeout_worker_healthcheck else None)
    if multiprocessing.current_process().name == WORKER_NAME:
        server.serves_metrics = False  # the supervisor serves the sum of every worker's metrics
    try:
        run_coroutine(_serve_while_parent_lives(server, sockets), config.loop)
    except SyntaxError as exc:
        # The usual --reload mistake: the file and line are what matter, not our stack.
        logger.error("Server process [%d] failed to start:\n%s", os.getpid(), "".join(traceback.format_exception_only(exc)).rstrip())
        sys.exit(1)
    except Exception:
        logger.exception("Server process [%d] failed to start", os.getpid())
        sys.exit(1)
    sys.exit(server.exit_code)


def _ignore_signal(sig: int, frame: Any) -> None:
    pass


async def _serve_while_parent_lives(server: Server, sockets: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    parent = multiprocessing.parent_process()
    if parent is not None:
        loop.add_reader(parent.sentinel, _parent_gone, server, loop, parent.sentinel)
    loop.add_signal_handler(signal.SIGQUIT, server.quit_now)
    await server.serve(sockets)


def _parent_gone(server: Server, loop: asyncio.AbstractEventLoop, sentinel: int) -> None:
    loop.remove_reader(sentinel)
    logger.warning("Supervisor process is gone; server process [%d] shutting down.", os.getpid())
    server.request_exit()
