"""Live-server test cases that serve the project's ASGI application (HTTP and WebSocket) on fastserve.

- :class:`FastserveLiveServerTestCase`: Django's ``LiveServerTestCase`` API (``live_server_url``,
  ``host``, ``port``), plus ``live_server_ws_url``.
- :class:`StaticLiveServerTestCase`: the same, serving static files from the staticfiles finders
  at ``STATIC_URL`` as ``django.contrib.staticfiles``' own ``StaticLiveServerTestCase`` does.
- :class:`ChannelsLiveServerTestCase`: a drop-in for ``channels.testing.ChannelsLiveServerTestCase``
  (``live_server_url``, ``live_server_ws_url``, ``serve_static``, ``static_wrapper``) without daphne.

The server runs in a thread of the test process, as Django's own live-server tests do, not in a
process as Channels' does. So the server uses the test database whatever the backend, an
in-memory SQLite test database included (Channels' test case refuses one), and test data
written by the test is visible to views and consumers once committed (these are
``TransactionTestCase``s). As Django's ``LiveServerThread`` does, the test's connection to an
in-memory SQLite test database is shared with the server rather than each server thread opening
its own connection to the shared-cache database (which works too, but then the connections lock
each other's tables): every thread that opens a connection while the server runs gets the test's
one. Such threads are many under ASGI: Django runs each request's sync views in a fresh thread,
Channels runs ``database_sync_to_async`` in threads of its own. The in-memory channel layer works
too: consumers and the test share the process.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.db import connections
from django.test.testcases import LiveServerTestCase, LiveServerThread
from django.utils.functional import classproperty

import fastserve

from .application import get_default_application


class LiveServerError(RuntimeError):
    """fastserve could not serve the application (the reason is in the fastserve.error log)."""


class FastserveLiveServerThread(LiveServerThread):
    """Django's live-server thread, serving ASGI on fastserve. ``static_handler`` is an ASGI
    wrapper (``ASGIStaticFilesHandler``) or None."""

    port: int  # 0 until the socket is bound (Django sets it in __init__)

    def run(self) -> None:
        sock = None
        try:
            app = get_default_application()
            if self.static_handler is not None:
                app = self.static_handler(app)
            sock = socket.create_server((self.host, self.port), family=_family(self.host))
            self.port = sock.getsockname()[1]
            self.server = _ThreadServer(fastserve.Config(app=app, lifespan="off"), self.is_ready)
            with _shared_connections(self.connections_override or {}):
                self.server.run([sock])
            if not self.server.started:
                raise LiveServerError(f"fastserve could not serve the application (exit status {self.server.exit_code}).")
        except Exception as exc:
            self.error = exc
            self.is_ready.set()
        finally:
            if sock is not None:
                sock.close()
            connections.close_all()

    def terminate(self) -> None:
        server = getattr(self, "server", None)
        if server is not None and server.loop is not None:
            server.loop.call_soon_threadsafe(server.request_exit)
        self.join()


class _ThreadServer(fastserve.Server):
    def __init__(self, config: fastserve.Config, ready: Any) -> None:
        super().__init__(config)
        self.ready = ready
        self.loop: asyncio.AbstractEventLoop | None = None

    def on_started(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.ready.set()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


@contextmanager
def _shared_connections(overrides: dict[str, Any]) -> Iterator[None]:
    """While the server runs, a thread opening a connection to an in-memory SQLite database gets
    the test's own connection (the only one that sees its data) instead of a new one."""
    if not overrides:
        yield
        return
    create_connection = connections.create_connection

    def create_or_share(alias: str) -> Any:
        return overrides[alias] if alias in overrides else create_connection(alias)

    connections.create_connection = create_or_share  # type: ignore[method-assign]
    try:
        yield
    finally:
        del connections.create_connection


class FastserveLiveServerTestCase(LiveServerTestCase):
    """``LiveServerTestCase`` on fastserve: HTTP and WebSocket. Serves no static files (see
    :class:`StaticLiveServerTestCase`)."""

    server_thread_class = FastserveLiveServerThread
    static_handler = None

    @classproperty
    def live_server_ws_url(cls) -> str:
        return f"ws://{cls.host}:{cls.server_thread.port}"


class StaticLiveServerTestCase(FastserveLiveServerTestCase):
    """Also serves ``STATIC_URL`` from the staticfiles finders, as Django's own does."""

    static_handler = ASGIStaticFilesHandler


class ChannelsLiveServerTestCase(FastserveLiveServerTestCase):
    """Where ``channels.testing.ChannelsLiveServerTestCase`` was used: the same attributes, served
    by fastserve in a thread (see the module docstring for the database)."""

    static_wrapper = ASGIStaticFilesHandler
    serve_static = True

    @classmethod
    def _create_server_thread(cls, connections_override: dict) -> LiveServerThread:
        return cls.server_thread_class(
            cls.host,
            cls.static_wrapper if cls.serve_static else None,
            connections_override=connections_override,
            port=cls.port,
        )
