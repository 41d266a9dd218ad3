"""What every connection of one server process shares: the connection registry, counters, the
default response headers. Read on the hot path, so kept flat. Imports nothing of the connection
classes (they import it), so the registry closes no import circle."""

from __future__ import annotations

import asyncio
import os
import sys
from email.utils import formatdate
from typing import Any

from .batching import WriteBatch
from .config import Config
from .logging import AccessLog

# Files kept free for the app (logs, database connections, files it reads) when the open-file
# limit (RLIMIT_NOFILE) bounds the number of connections: at least this many, or 1/32 of the limit.
FILE_RESERVE = 32


class ServerState:
    """What every connection of one server shares; read on the hot path, so kept flat."""

    def __init__(self, config: Config, app_state: dict, access_log: AccessLog | None, ws_handler: Any) -> None:
        self.connections: set = set()
        self.app_state = app_state
        self.asgi_info = {"version": "3.0", "spec_version": "2.4"}
        self.total_requests = 0
        # --limit-max-requests: the protocol compares total_requests to this after each response
        # (None never matches) and calls request_limit_reached() once it is hit.
        self.request_limit: int | None = None
        self.request_limit_reached: Any = None
        self.active_requests = 0
        self.shutting_down = False  # --health-path answers 503 from the moment shutdown begins
        self.write_batch = WriteBatch()  # see http/flow.py
        self.idle_sweep: asyncio.TimerHandle | None = None  # the keep-alive sweep (http1/connection.py)
        self.limit_concurrency = config.limit_concurrency
        # Accepting pauses at this many open connections: --limit-connections, or fewer when the
        # open-file limit leaves room for fewer (accepting past it fails: EMFILE).
        self.max_connections = min(config.limit_connections or sys.maxsize, connections_files_allow())
        self.accepting: Any = None  # the Server's Listeners: paused and resumed at max_connections
        self.tls: Any = None  # TLSInfo when serving TLS: source of the ASGI "tls" scope extension
        self.access_log = access_log
        self.ws_handler = ws_handler
        # Hands a connection to HTTP/2 (negotiate.py sets it when HTTP/2 is on): called with
        # (transport, server, client, scheme, bytes read, h2c upgrade or None).
        self.h2_takeover: Any = None
        self.h2_request_done: Any = None  # Metrics.request_done when --metrics-bind is on (negotiate.py)
        self.h2_prior_knowledge = config.http2_cleartext in ("both", "prior-knowledge")
        self.h2c_upgrade = config.http2_cleartext in ("both", "upgrade")
        self._server_header = config.server_header
        self._date_header = config.date_header
        self._extra_headers = config.default_headers
        self._all_closed: asyncio.Future | None = None
        self.shutting_down = False  # set by Server.shutdown(); later connections are told at once
        self.default_header_items: list[tuple[bytes, bytes]] = []
        self.default_headers = b""
        self.refresh_default_headers()

    def refresh_default_headers(self) -> None:
        """Rebuild the default header block; called once a second for the Date header."""
        items = []
        if self._server_header:
            items.append((b"server", b"fastserve"))
        if self._date_header:
            items.append((b"date", formatdate(usegmt=True).encode("ascii")))
        items.extend(self._extra_headers)
        self.default_header_items = items
        self.default_headers = b"".join(name + b": " + value + b"\r\n" for name, value in items)

    def defaults_without(self, app_headers: Any) -> bytes:
        """Default headers minus those the app sets itself (slow path: server or date overridden)."""
        names = {bytes(name).lower() for name, _ in app_headers}
        return b"".join(n + b": " + v + b"\r\n" for n, v in self.default_header_items if n not in names)

    def response_complete(self, conn: Any, cycle: Any) -> None:
        """One more request answered, on any wire format: counted for --limit-max-requests (a
        WebSocket session counts as one: ``cycle`` None), and access-logged."""
        self.total_requests += 1
        if self.total_requests == self.request_limit:
            self.request_limit_reached()
        if cycle is not None and self.access_log is not None:
            self.access_log.log(conn, cycle)

    def connection_opened(self, conn: Any) -> None:
        self.connections.add(conn)
        if self.shutting_down:
            # Accepted in the same loop step as the stop signal (or upgraded to WebSocket since):
            # the shutdown has already told every registered connection, so tell this one now.
            conn.shutdown()
        if len(self.connections) >= self.max_connections:
            self.accepting.pause(len(self.connections))

    def connection_closed(self, conn: Any) -> None:
        self.connections.discard(conn)
        accepting = self.accepting
        if accepting is not None and accepting.paused and len(self.connections) < self.max_connections:
            accepting.resume()
        if not self.connections and self._all_closed is not None and not self._all_closed.done():
            self._all_closed.set_result(None)

    def all_closed(self) -> asyncio.Future:
        self._all_closed = asyncio.get_running_loop().create_future()
        if not self.connections:
            self._all_closed.set_result(None)
        return self._all_closed


def connections_files_allow() -> int:
    """How many connections the open-file limit leaves room for, past the files open now and a
    reserve for the app (sys.maxsize when there is no limit, or it cannot be told)."""
    limit = open_file_limit()
    if limit is None:
        return sys.maxsize
    try:
        open_now = len(os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))
    except OSError:
        return sys.maxsize
    return max(1, limit - open_now - max(FILE_RESERVE, limit // 32))


def open_file_limit() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft
