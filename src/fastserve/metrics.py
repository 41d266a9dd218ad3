"""``--metrics-bind HOST:PORT``: Prometheus metrics on a separate address (``fastserve[metrics]``).

Off by default, and then nothing here is imported and no request pays for it. On, the server uses
a protocol subclass that counts each request once it completes, and samples its gauges (open
connections and WebSockets, requests in flight) once a second from the Date-header timer rather
than per request.

Processes: a single server serves its own registry. Under ``--workers`` the supervisor points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before starting the workers (unless it is set
already), the workers write their numbers there, and the supervisor alone serves the sum on the
metrics address. Under Gunicorn every worker serves the metrics address with SO_REUSEPORT; with
``PROMETHEUS_MULTIPROC_DIR`` set (as prometheus_client's Gunicorn guide says), each answers with
the sum over all workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

from .config import parse_bind

logger = logging.getLogger("fastserve.error")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MISSING = "--metrics-bind needs prometheus_client: pip install 'fastserve[metrics]'"
# Seconds; requests from sub-millisecond API calls to long downloads.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
START_DELAY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
REFUSAL_STATUSES = ("400", "408", "413", "414", "431", "503")

_current: Metrics | None = None


def missing_dependency() -> str | None:
    """The one-line error when prometheus_client is not installed, else None."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return MISSING
    return None


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """This process's metric objects (prometheus_client writes them to files in multiprocess mode)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = multiprocess_mode()
        own = None if self.multiprocess else CollectorRegistry()
        self.own_registry = own
        self.requests = Counter("fastserve_requests", "Requests answered, by status class and protocol.",
                                ("status_class", "protocol"), registry=own)
        self.duration = Histogram("fastserve_request_duration_seconds", "From the app's start to the response's end.",
                                  ("protocol",), buckets=DURATION_BUCKETS, registry=own)
        self.start_delay = Histogram("fastserve_request_start_delay_seconds",
                                     "From accepting a connection to the app starting on its first request.",
                                     buckets=START_DELAY_BUCKETS, registry=own)
        self.refusals = Counter("fastserve_refusals", "Requests refused by the server, by status (no app ran).",
                                ("status",), registry=own)
        self.in_flight = Gauge("fastserve_requests_in_flight", "Requests whose app is running.", registry=own,
                               multiprocess_mode="livesum")
        self.connections = Gauge("fastserve_connections_open", "Open client connections (HTTP and WebSocket).",
                                 registry=own, multiprocess_mode="livesum")
        self.websockets = Gauge("fastserve_websockets_open", "Open WebSocket connections.", registry=own,
                                multiprocess_mode="livesum")
        self.worker_restarts = Counter("fastserve_worker_restarts", "Workers replaced after exiting or getting stuck.",
                                       registry=own)
        for status in REFUSAL_STATUSES:
            self.refusals.labels(status)  # present at 0 from the start, so rate() works at once
        self._request_children: dict[tuple[int, str], tuple[Any, Any]] = {}

    def request_done(self, status: int, protocol: str, seconds: float | None) -> None:
        key = (status // 100, protocol)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(f"{key[0]}xx", protocol), self.duration.labels(protocol))
            self._request_children[key] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def sample(self, state: Any) -> None:
        """Set the gauges from the server's own counts (called once a second)."""
        websockets = sum(1 for conn in state.connections if conn.is_websocket)
        self.connections.set(len(state.connections))
        self.websockets.set(websockets)
        self.in_flight.set(state.active_requests)

    def serving_registry(self) -> Any:
        """What the metrics address serves: this process's metrics, or every process's sum."""
        if not self.multiprocess:
            from prometheus_client import ProcessCollector

            ProcessCollector(registry=self.own_registry)
            return self.own_registry
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry


def enable() -> Metrics:
    """This process's Metrics, created once."""
    global _current
    if _current is None:
        _current = Metrics()
    return _current


def current() -> Metrics | None:
    return _current


def process_exited(pid: int) -> None:
    """A worker is gone: its live gauges must no longer count (multiprocess mode)."""
    if _current is not None and _current.multiprocess:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# -- the HTTP protocol subclass --------------------------------------------------------------------
def metrics_protocol_class(base: type, metrics: Metrics) -> type:
    """``base`` (an HTTPProtocol class) counting requests, durations and refusals."""
    request_done = metrics.request_done
    start_delay = metrics.start_delay.observe
    refusals = {int(status): metrics.refusals.labels(status) for status in REFUSAL_STATUSES}

    class MetricsHTTPProtocol(base):
        __slots__ = ("accepted_at", "app_started_at")

        def connection_made(self, transport: Any) -> None:
            self.accepted_at = time.perf_counter()
            self.app_started_at: float | None = None
            super().connection_made(transport)

        def _start(self, cycle: Any) -> None:
            now = time.perf_counter()
            state = self.state
            if state.limit_concurrency is not None and state.active_requests >= state.limit_concurrency:
                refusals[503].inc()  # base _start answers it with 503
            elif self.accepted_at is not None:
                start_delay(now - self.accepted_at)
                self.accepted_at = None  # the first request on the connection only
            self.app_started_at = now
            super()._start(cycle)

        def on_response_complete(self, cycle: Any) -> None:
            started, self.app_started_at = self.app_started_at, None
            request_done(cycle.status, "http/1.0" if cycle.http_version == "1.0" else "http/1.1",
                         time.perf_counter() - started if started is not None else None)
            super().on_response_complete(cycle)

        def refuse(self, error: Any) -> None:
            counter = refusals.get(error.status)
            if counter is None:
                counter = refusals[error.status] = metrics.refusals.labels(str(error.status))
            counter.inc()
            super().refuse(error)

        def switch_protocols(self, leftover: bytes) -> None:
            waiting = self.active is not None or self.pipeline
            super().switch_protocols(leftover)
            if not waiting:
                request_done(101, "websocket", None)

    return MetricsHTTPProtocol


def with_metrics(base: type, config: Any) -> type:
    if not config.metrics_bind:
        return base
    return metrics_protocol_class(base, enable())


# -- the metrics address ----------------------------------------------------------------------------
class MetricsEndpoint:
    """``GET /metrics`` on its own socket, answered from a thread (multiprocess collection reads
    files): a small asyncio server with bounded reads, never the application's port."""

    HEAD_LIMIT = 8192
    READ_TIMEOUT = 5.0

    def __init__(self, bind: str, registry: Any, reuse_port: bool = False) -> None:
        self.host, self.port = parse_bind(bind)
        self.registry = registry
        self.reuse_port = reuse_port
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.server = await asyncio.start_server(self._handle, sock=sock, limit=self.HEAD_LIMIT)
        host, port = sock.getsockname()[:2]
        logger.info("Metrics on http://%s:%d/metrics", f"[{host}]" if ":" in host else host, port)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.READ_TIMEOUT)
            writer.write(await self._answer(head))
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, head: bytes) -> bytes:
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
            return _response(b"405 Method Not Allowed", b"text/plain", b"GET /metrics\n")
        if parts[1].partition(b"?")[0] != b"/metrics":
            return _response(b"404 Not Found", b"text/plain", b"metrics are at /metrics\n")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, self.registry)
        return _response(b"200 OK", CONTENT_TYPE_LATEST.encode(), b"" if parts[0] == b"HEAD" else body, len(body))


def _response(status: bytes, content_type: bytes, body: bytes, length: int | None = None) -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
        status, content_type, len(body) if length is None else length, body)
