"""``--workers N``: pre-fork N server processes that share the parent's listening socket.

Signals to the parent:
- SIGINT / SIGTERM: every worker shuts down gracefully (``--timeout-graceful-shutdown``, then
  lifespan shutdown); a worker still running after that plus a short margin is killed. A second
  SIGINT makes the workers skip the graceful wait.
- SIGHUP: roll every worker over, one at a time: a new worker starts, and only once it is
  listening is an old one asked to stop. Old workers finish their requests; the shared socket keeps
  queueing connections, so none is refused. A retiring worker answers keep-alive clients with
  "connection: close" and closes their idle connections only once quiet (HTTPProtocol.shutdown). A new worker that fails to start ends the roll-over
  and the remaining old workers keep serving.
- SIGTTIN / SIGTTOU: one worker more / one fewer (never below one).

``--reuse-port`` (Linux): each worker slot has its own listening socket in the SO_REUSEPORT group
of the parent's, and the kernel spreads new connections evenly across the slots by their
addresses. With one shared socket, the first worker to wake takes every connection waiting
(libuv accepts until none is left), so a burst of keep-alive clients can land on one worker. The
parent keeps each slot's socket open: a replacement worker (after a crash, or in a roll-over)
serves the connections the kernel queued for its slot meanwhile. A slot given up with SIGTTOU
closes its socket once its worker retires; connections still queued on it then are reset (unless
``net.ipv4.tcp_migrate_req`` is 1). The price of the even spread: a worker that is slow or busy
still gets its share of new connections.

A worker that exits on its own (a crash, or ``--limit-max-requests`` reached) is replaced and its
exit status logged. If a worker exits with an error before the pool ever served (the app cannot be
imported, lifespan startup failed), the supervisor stops and returns that worker's exit status
instead of restarting it forever; other start-up failures (a worker killed while booting, or a bad
deploy during a roll-over) are retried with a growing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import time

from .. import metrics
from ..config import Config
from ..metrics import MULTIPROC_ENV
from ..server import bind_tcp, has_reuse_port
from .process import (
    WORKER_NAME,
    ChildProcess,
    describe_exit,
    heartbeat_interval,
    install_signal_handlers,
    stop_deadline,
    supervise,
)

logger = logging.getLogger("fastserve.error")

RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)  # before restarting a worker that failed to start


def run(config: Config) -> int:
    if not config.metrics_bind:
        return supervise(config, Supervisor)
    with shared_metrics_directory():
        return supervise(config, Supervisor)


@contextlib.contextmanager
def shared_metrics_directory():
    """--metrics-bind: workers write their metrics to files in PROMETHEUS_MULTIPROC_DIR (a fresh
    directory unless the variable is set); set before prometheus_client is first imported."""
    if os.environ.get(MULTIPROC_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="fastserve-metrics-") as path:
        os.environ[MULTIPROC_ENV] = path
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]


class Supervisor:
    def __init__(self, config: Config, sockets: list) -> None:
        self.config = config
        self.target = config.workers or 1
        self.workers: list[ChildProcess] = []  # the pool, oldest first
        self.children: set[ChildProcess] = set()  # every process not yet exited, retiring ones too
        self.stopping = False
        self.exit_code = 0
        self.pool_ready = False
        self.failed_starts = 0
        self.rolling: asyncio.Task | None = None
        self.background: set[asyncio.Task] = set()
        self.retry_handle: asyncio.TimerHandle | None = None
        self.stop_requested: asyncio.Event | None = None
        self.metrics: metrics.Metrics | None = None
        self.metrics_endpoint: metrics.MetricsEndpoint | None = None
        self.listeners = WorkerSockets(config, sockets)

    async def run(self) -> int:
        self.stop_requested = asyncio.Event()
        install_signal_handlers({
            signal.SIGINT: self.handle_stop,
            signal.SIGTERM: self.handle_stop,
            signal.SIGHUP: self.handle_hup,
            signal.SIGTTIN: self.handle_ttin,
            signal.SIGTTOU: self.handle_ttou,
        })
        if self.config.metrics_bind and not await self._start_metrics():
            return 1
        logger.info("Started parent process [%d]; starting %d workers", os.getpid(), self.target)
        initial = [self.spawn() for _ in range(self.target)]
        self.watch(self._pool_started(initial))
        if self.config.timeout_worker_healthcheck:
            self._check_heartbeats()
        await self.stop_requested.wait()
        await self.stop_all()
        self.listeners.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        logger.info("Stopped parent process [%d]", os.getpid())
        return self.exit_code

    async def _start_metrics(self) -> bool:
        problem = metrics.missing_dependency()
        if problem:
            logger.error("%s", problem)
            return False
        self.metrics = metrics.enable()
        endpoint = metrics.MetricsEndpoint(self.config.metrics_bind, self.metrics.serving_registry())
        try:
            await endpoint.start()
        except OSError as exc:
            logger.error("Could not bind the metrics address %s (--metrics-bind): %s", self.config.metrics_bind, exc.strerror or exc)
            return False
        self.metrics_endpoint = endpoint
        return True

    # -- workers ----------------------------------------------------------------------------------
    def spawn(self, slot: int | None = None) -> ChildProcess:
        """A new pool worker in ``slot`` (a roll-over's: the slot of the worker it replaces), or
        in the lowest slot no pool worker holds (a replacement's: the slot its predecessor left)."""
        if slot is None:
            held = {worker.slot for worker in self.workers}
            slot = next(n for n in range(len(held) + 1) if n not in held)
        sockets = self.listeners.for_slot(slot)
        worker = ChildProcess(self.config, sockets, self._worker_exited, name=WORKER_NAME).start()
        worker.slot = slot
        self.workers.append(worker)
        self.children.add(worker)
        worker.ready.add_done_callback(lambda _: self._worker_ready(worker))
        return worker

    def _worker_ready(self, worker: ChildProcess) -> None:
        if worker.ready.result():
            self.failed_starts = 0
            logger.info("Worker [%d] is serving", worker.pid)

    async def _pool_started(self, initial: list[ChildProcess]) -> None:
        results = await asyncio.gather(*(w.ready for w in initial))
        if all(results):
            self.pool_ready = True

    def _worker_exited(self, worker: ChildProcess) -> None:
        metrics.process_exited(worker.pid)
        self.children.discard(worker)
        if worker in self.workers:
            self.workers.remove(worker)
        if self.stopping or worker.stop_requested:
            logger.info("Worker [%d] stopped (%s)", worker.pid, describe_exit(worker.exitcode))
            return
        if not self.pool_ready and not worker.ready.result() and (worker.exitcode or 0) > 0:
            logger.error("Worker [%d] failed to start (%s); stopping.", worker.pid, describe_exit(worker.exitcode))
            self.exit_code = worker.exitcode or 1
            self.stop_requested.set()
            return
        status = describe_exit(worker.exitcode)
        if len(self.workers) >= self.target:  # e.g. a roll-over's new worker that failed to start
            logger.warning("Worker [%d] exited (%s)", worker.pid, status)
        elif worker.ready.result():
            log = logger.info if worker.exitcode == 0 else logger.warning
            log("Worker [%d] exited (%s); starting a replacement.", worker.pid, status)
            if self.metrics is not None:
                self.metrics.worker_restarts.inc()
            self.spawn()
        else:
            self._retry_later(worker, status)

    def _retry_later(self, worker: ChildProcess, status: str) -> None:
        delay = RETRY_DELAYS[min(self.failed_starts, len(RETRY_DELAYS) - 1)]
        self.failed_starts += 1
        logger.warning("Worker [%d] failed to start (%s); retrying in %.1fs.", worker.pid, status, delay)
        if self.retry_handle is None:
            self.retry_handle = asyncio.get_running_loop().call_later(delay, self._top_up)

    def _top_up(self) -> None:
        self.retry_handle = None
        if not self.stopping:
            for _ in range(self.target - len(self.workers)):
                self.spawn()

    def _check_heartbeats(self) -> None:
        """--timeout-worker-healthcheck: kill a serving worker whose event loop stopped beating
        (an app blocking it); _worker_exited then starts its replacement."""
        if self.stopping:
            return
        timeout = self.config.timeout_worker_healthcheck
        now = time.monotonic()
        for worker in self.workers:
            last = worker.heartbeat.value
            if last and not worker.stop_requested and now - last > timeout and not worker.exited.done():
                logger.error(
                    "Worker [%d] is stuck: its event loop has not run for %.1fs (--timeout-worker-healthcheck %ss; "
                    "an app blocking it?); killing and replacing it.", worker.pid, now - last, timeout,
                )
                worker.heartbeat.value = 0.0  # reported once
                worker.send_signal(signal.SIGKILL)
        asyncio.get_running_loop().call_later(heartbeat_interval(self.config), self._check_heartbeats)

    def retire(self, worker: ChildProcess) -> None:
        """Stop one worker gracefully in the background (it finishes its requests)."""
        self.workers.remove(worker)
        if all(other.slot != worker.slot for other in self.workers):
            self.listeners.drop(worker.slot)  # SIGTTOU: nobody serves this slot any more
        self.watch(worker.stop(stop_deadline(self.config)))

    def watch(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # -- signals ----------------------------------------------------------------------------------
    def handle_stop(self, sig: int) -> None:
        if self.stopping and sig == signal.SIGINT:
            logger.info("Second interrupt: workers skip the graceful wait")
            for worker in self.children:
                worker.send_signal(signal.SIGQUIT)
        self.stop_requested.set()

    def handle_hup(self, sig: int) -> None:
        if self.rolling is not None and not self.rolling.done():
            logger.info("SIGHUP: a roll-over is already under way")
            return
        logger.info("SIGHUP: restarting %d workers one by one", len(self.workers))
        self.rolling = asyncio.get_running_loop().create_task(self.roll_over())

    def handle_ttin(self, sig: int) -> None:
        if self.stopping:
            return
        self.target += 1
        logger.info("SIGTTIN: %d workers", self.target)
        self.spawn()

    def handle_ttou(self, sig: int) -> None:
        if self.stopping or self.target <= 1:
            return
        self.target -= 1
        logger.info("SIGTTOU: %d workers", self.target)
        if self.workers:
            self.retire(self.workers[0])

    async def roll_over(self) -> None:
        for old in list(self.workers):
            if self.stopping:
                return
            if old not in self.workers:
                continue  # it died meanwhile and was replaced already
            new = self.spawn(old.slot)
            if not await new.ready:
                logger.error("Roll-over stopped: worker [%d] failed to start; the old workers keep serving.", new.pid)
                return
            if old in self.workers:
                self.retire(old)
        logger.info("Roll-over complete")

    # -- shutdown ---------------------------------------------------------------------------------
    async def stop_all(self) -> None:
        self.stopping = True
        if self.retry_handle is not None:
            self.retry_handle.cancel()
        if self.rolling is not None:
            self.rolling.cancel()
        deadline = stop_deadline(self.config)
        await asyncio.gather(*(w.stop(deadline) for w in list(self.workers)))
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)


class WorkerSockets:
    """The listening sockets each worker slot serves: the parent's for all (the default), or, with
    --reuse-port, a socket of the slot's own in each of their SO_REUSEPORT groups (see the module
    docstring). Slot 0 starts with the parent's own sockets."""

    def __init__(self, config: Config, sockets: list) -> None:
        self.shared = sockets
        self.backlog = config.backlog
        self.addresses = [(sock.family, sock.getsockname()) for sock in sockets]
        self.per_slot: dict[int, list] | None = None
        if config.reuse_port:
            if all(has_reuse_port(sock) for sock in sockets):
                self.per_slot = {0: sockets}
                logger.info("Each worker listens on its own socket (--reuse-port)")
            else:
                logger.warning("--reuse-port needs TCP sockets bound by fastserve; the workers share one socket")

    def for_slot(self, slot: int) -> list:
        if self.per_slot is None:
            return self.shared
        sockets = self.per_slot.get(slot)
        if sockets is None:
            sockets = []
            try:
                for family, address in self.addresses:
                    sockets.append(bind_tcp(family, address, self.backlog, reuse_port=True))
            except OSError as exc:  # e.g. out of file descriptors: share another slot's
                for sock in sockets:
                    sock.close()
                logger.warning("Could not open a listening socket for worker slot %d (%s); it shares another's",
                               slot, exc.strerror or exc)
                return next(iter(self.per_slot.values()), self.shared)
            self.per_slot[slot] = sockets
        return sockets

    def drop(self, slot: int) -> None:
        """No worker serves ``slot`` any more: stop listening there (its worker's copy closes as it
        retires), so the kernel sends new connections to the slots that are served."""
        if self.per_slot is not None:
            for sock in self.per_slot.pop(slot, ()):
                sock.close()

    def close(self) -> None:
        if self.per_slot is not None:
            for slot in list(self.per_slot):
                self.drop(slot)
