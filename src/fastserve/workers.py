"""Gunicorn worker classes: run fastserve under Gunicorn's process manager.

Usage
-----
``pip install 'fastserve[gunicorn]'``, then::

    gunicorn -k fastserve.workers.Worker project.asgi:application -w 4 -b 0.0.0.0:8000

``fastserve.workers.Worker`` uses uvloop and httptools where they are installed;
``fastserve.workers.H11Worker`` uses asyncio's own loop and the pure-Python h11 parser (PyPy, or
when compiled extensions are not wanted). Subclass either and set ``CONFIG_KWARGS`` to pin other
fastserve settings, e.g. ``CONFIG_KWARGS = {"loop": "asyncio", "http": "httptools", "ws": "none"}``.

Each worker builds one fastserve ``Config`` from Gunicorn's settings and serves Gunicorn's
already-bound sockets; lifespan startup and shutdown run in every worker, with per-worker state.

Gunicorn settings that apply
----------------------------
- ``bind`` (TCP, ``unix:PATH``, ``fd://N``), ``workers``, ``backlog``, ``reuse_port``, ``user``/
  ``group``, ``chdir``, ``raw_env``, ``pythonpath``, ``preload_app``: handled by Gunicorn itself.
- ``timeout``: the worker touches its heartbeat file from the event loop, so a worker serving long
  requests stays alive, and one whose event loop is blocked is killed (SIGABRT, ``worker_abort``).
- ``graceful_timeout``: on SIGTERM the worker stops accepting, lets in-flight requests finish, and
  runs lifespan shutdown, all within the graceful timeout (connections get it minus up to 1 s,
  which is kept for lifespan shutdown before Gunicorn's SIGKILL).
- ``keepalive`` -> ``--timeout-keep-alive``; ``max_requests`` + ``max_requests_jitter`` -> the
  worker exits gracefully after that many responses and Gunicorn starts a new one.
- ``certfile``, ``keyfile``, ``ca_certs``, ``cert_reqs``, ``ciphers``: TLS on every socket.
- ``forwarded_allow_ips``: peers trusted for ``X-Forwarded-For``/``-Proto`` and ``Forwarded``.
- ``proxy_protocol`` (``v1``, ``v2``, ``auto``: all read both versions): fastserve's
  ``--proxy-protocol``, from ``forwarded_allow_ips`` peers (not ``proxy_allow_ips``).
- ``limit_request_line``, ``limit_request_fields``: as fastserve's limits (0 means "unlimited" in
  Gunicorn and becomes 1 MiB / 32768 fields here). ``limit_request_field_size`` bounds the header
  section as a whole (fields x field size), since fastserve limits the total, not each field.
- ``accesslog``, ``access_log_format``, ``logger_class``, ``loglevel``, ``errorlog``,
  ``logconfig*``, ``syslog*``: access lines go through Gunicorn's logger (``Logger.access``, so a
  custom ``logger_class`` sees them) with Gunicorn's atoms; fastserve's own messages go to
  Gunicorn's error log at Gunicorn's log level.
- Signals: SIGTERM graceful stop; SIGINT/SIGQUIT quick stop (``worker_int`` hook, connections
  closed at once, no lifespan shutdown); SIGUSR1 reopens log files; SIGABRT (sent by the arbiter
  on timeout) runs ``worker_abort`` and exits at once (``os._exit``: the stuck loop cannot be
  unwound safely, so ``worker_exit`` does not run for an aborted worker). SIGHUP, SIGTTIN and
  SIGTTOU go to the arbiter, which rolls over / adds / removes workers. Hooks ``post_worker_init``, ``worker_int``, ``worker_abort``,
  ``worker_exit``, ``child_exit``, ``pre_fork``, ``post_fork``, ``when_ready`` and the rest of the
  arbiter hooks run as usual. ``SCRIPT_NAME`` in the environment becomes the ASGI ``root_path``.
- ``http_protocols``, ``http2_cleartext``, ``http2_max_concurrent_streams``,
  ``http2_initial_window_size``, ``http2_max_frame_size``, ``http2_max_header_list_size``
  (gunicorn 24+): HTTP/2 is on only when ``http_protocols`` names h2 (gunicorn's default "h1"
  turns it off); the limits are taken when set to other than gunicorn's defaults.
- ``reload``: Gunicorn's reloader stops the worker when a module changes and the arbiter starts a
  fresh one (``fastserve --reload`` remains the better development tool: it survives syntax errors).

Gunicorn settings that cannot apply
-----------------------------------
- ``threads``, ``worker_connections``: one event loop per worker; use fastserve's
  ``--limit-concurrency`` semantics via ``CONFIG_KWARGS`` if you need a cap.
- ``pre_request``, ``post_request``: they take Gunicorn's WSGI request objects; use ASGI
  middleware instead.
- ``secure_scheme_headers``: fastserve reads the scheme from ``X-Forwarded-Proto`` / ``Forwarded``
  only (from trusted peers), not from arbitrary headers such as ``X-Forwarded-SSL``.
- ``ssl_context`` hook, ``ssl_version``, ``do_handshake_on_connect``, ``suppress_ragged_eofs``:
  fastserve builds its TLS context from the files and options above.
- ``sendfile``, ``strip_header_spaces``,
  ``permit_obsolete_folding``, ``permit_unconventional_http_method``/``_version``,
  ``tmp_upload_dir``: not used by this worker.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import signal
import sys
import time
from typing import Any

from gunicorn.workers.base import Worker as GunicornWorker

from .config import Config, ConfigError
from .server import STARTUP_FAILURE, Server, run_coroutine

UNLIMITED_LINE = 1 << 20
UNLIMITED_FIELDS = 32768
HEARTBEAT_MAX_INTERVAL = 1.0  # also how soon a worker notices that the arbiter is gone
LIFESPAN_SHUTDOWN_RESERVE = 1.0


class Worker(GunicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": "auto"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server: WorkerServer | None = None
        self._heartbeat_handle: asyncio.TimerHandle | None = None

    # -- gunicorn's worker API ------------------------------------------------------------------
    def init_process(self) -> None:
        self._route_fastserve_logs()
        super().init_process()  # signals, app loading, post_worker_init, then run()

    def run(self) -> None:
        try:
            config = config_from_gunicorn(self.cfg, self.wsgi, self.max_requests, **self.CONFIG_KWARGS)
        except ConfigError as exc:
            self.log.error("fastserve cannot use these settings: %s", exc)
            sys.exit(STARTUP_FAILURE)  # gunicorn's "worker failed to boot": the arbiter stops
        self.server = WorkerServer(config, self)
        run_coroutine(self._serve(), config.loop)
        self.init_signals()  # closing the loop reset its signals to the defaults; exit on our terms
        sys.exit(self.server.exit_code)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._install_loop_signals(loop)
        self._heartbeat()
        if not self.alive:  # SIGTERM arrived while the app was loading
            self.server.request_exit()
        try:
            await self.server.serve([listener.sock for listener in self.sockets])
        finally:
            if self._heartbeat_handle is not None:
                self._heartbeat_handle.cancel()

    # -- signals: gunicorn's semantics on the event loop ---------------------------------------
    def _install_loop_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        # SIGABRT keeps gunicorn's plain handler: the arbiter sends it when this loop is stuck,
        # so a loop callback would never run.
        loop.add_signal_handler(signal.SIGTERM, self._graceful_stop)
        loop.add_signal_handler(signal.SIGINT, self._quick_stop)
        loop.add_signal_handler(signal.SIGQUIT, self._quick_stop)
        loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)
        loop.add_signal_handler(signal.SIGWINCH, lambda: None)

    def _graceful_stop(self) -> None:
        self.alive = False
        self.server.request_exit()

    def _quick_stop(self) -> None:
        self.alive = False
        self.cfg.worker_int(self)
        self.server.quit_now()

    def handle_abort(self, sig: int, frame: Any) -> None:
        """SIGABRT from the arbiter: this worker's event loop is stuck (see ``timeout``).

        Gunicorn's base class raises SystemExit from the signal handler, but here that exception
        would surface inside whatever app code blocked the loop and could be swallowed on the
        way out (by the app, or by a parser callback). Exit for certain instead.
        """
        self.alive = False
        self.cfg.worker_abort(self)
        self.log.info("Worker aborted (pid: %s)", self.pid)
        logging.shutdown()
        os._exit(1)

    # -- heartbeat ------------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        """Touch the tmp file from the event loop: a busy-but-responsive worker stays alive."""
        self.notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.server.request_exit()
            return
        if not self.alive:  # gunicorn's --reload thread asks the worker to stop this way
            self.server.request_exit()
            return
        interval = min(self.timeout, HEARTBEAT_MAX_INTERVAL) if self.timeout else HEARTBEAT_MAX_INTERVAL
        self._heartbeat_handle = asyncio.get_running_loop().call_later(interval, self._heartbeat)

    # -- logging --------------------------------------------------------------------------------
    def _route_fastserve_logs(self) -> None:
        """fastserve's messages go to gunicorn's error log, at gunicorn's level, unless a
        ``logconfig`` has configured the ``fastserve`` logger itself."""
        logger = logging.getLogger("fastserve")
        if logger.handlers:
            return
        error_log = self.log.error_log
        logger.handlers = list(error_log.handlers)
        logger.setLevel(error_log.level)
        logger.propagate = False


class H11Worker(Worker):
    CONFIG_KWARGS = {"loop": "asyncio", "http": "h11"}


class WorkerServer(Server):
    """The Server as a gunicorn worker: the worker owns the signals and the access log."""

    handled_signals = ()
    # Gunicorn's log lines carry the pid already; Ctrl+C belongs to the arbiter.
    running_message = "fastserve running on %s"
    force_exit_hint = ""
    metrics_reuse_port = True  # every worker serves --metrics-bind (PROMETHEUS_MULTIPROC_DIR: the sum)

    def __init__(self, config: Config, worker: Worker) -> None:
        super().__init__(config)
        self.worker = worker

    def create_access_log(self) -> Any:
        log = self.worker.log
        return GunicornAccessLog(log) if log.access_log_enabled else None


def config_from_gunicorn(cfg: Any, app: Any, max_requests: int, **overrides: Any) -> Config:
    """One fastserve Config from gunicorn's settings (see the module docstring)."""
    graceful = float(cfg.graceful_timeout)
    fields = cfg.limit_request_fields or UNLIMITED_FIELDS
    field_size = cfg.limit_request_field_size or UNLIMITED_LINE
    settings: dict[str, Any] = {
        "app": app,
        "backlog": cfg.backlog,
        "timeout_keep_alive": float(cfg.keepalive),
        "timeout_graceful_shutdown": graceful - min(LIFESPAN_SHUTDOWN_RESERVE, graceful / 2),
        "limit_request_line": cfg.limit_request_line or UNLIMITED_LINE,
        "limit_request_fields": fields,
        "limit_request_headers_size": fields * (field_size + 2),
        "forwarded_allow_ips": ",".join(cfg.forwarded_allow_ips),
        "root_path": os.environ.get("SCRIPT_NAME", ""),
        "access_log_format": cfg.access_log_format,
        "log_level": _log_level(cfg.loglevel),
        "limit_max_requests": max_requests if cfg.max_requests > 0 else None,
        "proxy_protocol": _proxy_protocol_on(getattr(cfg, "proxy_protocol", False)),
    }
    settings.update(_http2_settings(cfg))
    if cfg.is_ssl:
        settings.update(
            ssl_certfile=cfg.certfile,
            ssl_keyfile=cfg.keyfile,
            ssl_ca_certs=cfg.ca_certs,
            ssl_cert_reqs=int(cfg.cert_reqs),
            ssl_ciphers=cfg.ciphers,
        )
    settings.update(overrides)
    if "timeout_graceful_shutdown" not in overrides:
        # graceful_timeout is the whole budget: a --shutdown-delay (CONFIG_KWARGS) comes out of it.
        settings["timeout_graceful_shutdown"] = max(0.0, settings["timeout_graceful_shutdown"] - settings.get("shutdown_delay", 0.0))
    return Config(**settings)


# Gunicorn's HTTP/2 settings (gunicorn 24+) -> fastserve's. The limits are taken only when set to
# something other than gunicorn's defaults: those fit gunicorn's own HTTP/2 code, and one of them
# (100 streams) would make --http2-codec auto leave zttp (fixed at 128) for the ~20x slower h2.
_GUNICORN_HTTP2_LIMITS = {
    "http2_max_concurrent_streams": 100,
    "http2_initial_window_size": 65535,
    "http2_max_frame_size": 16384,
    "http2_max_header_list_size": 65536,
}


def _http2_settings(cfg: Any) -> dict[str, Any]:
    """HTTP/2 as gunicorn's settings say: `http_protocols` without h2 (its default, "h1") turns
    it off; with h2 it must work (--http2 on); `http2_cleartext` maps one to one. Older gunicorns
    have none of these: fastserve's own defaults apply."""
    protocols = getattr(cfg, "http_protocols", None)
    if protocols is None:
        return {}
    if "h2" not in protocols:
        return {"http2": "off"}
    settings: dict[str, Any] = {"http2": "on", "http2_cleartext": getattr(cfg, "http2_cleartext", "off")}
    for name, gunicorn_default in _GUNICORN_HTTP2_LIMITS.items():
        value = getattr(cfg, name, gunicorn_default)
        if value != gunicorn_default:
            settings[name] = value
    return settings


def _proxy_protocol_on(value: Any) -> bool:
    """Gunicorn 23+ takes off|v1|v2|auto (fastserve accepts both versions); older ones a boolean."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "off", "false", "no", "0")
    return bool(value)


def _log_level(name: str) -> str:
    name = (name or "info").lower()
    return name if name in ("critical", "error", "warning", "info", "debug") else "info"


class GunicornAccessLog:
    """Feeds each response to gunicorn's ``Logger.access`` with WSGI-shaped stand-ins, so the
    ``access_log_format`` atoms and any custom ``logger_class`` behave as with other workers."""

    def __init__(self, glog: Any) -> None:
        self.glog = glog

    def log(self, conn: Any, cycle: Any) -> None:
        elapsed = max(0.0, time.perf_counter() - cycle.start_time) if cycle.start_time else 0.0
        scope = cycle.scope
        request = _Request(scope["headers"])
        response = _Response(cycle)
        self.glog.access(response, request, _environ(scope), datetime.timedelta(seconds=elapsed))


class _Request:
    __slots__ = ("headers",)

    def __init__(self, raw_headers: Any) -> None:
        self.headers = [(bytes(n).decode("latin-1").upper(), bytes(v).decode("latin-1")) for n, v in raw_headers]


class _Response:
    __slots__ = ("status", "sent", "headers")

    def __init__(self, cycle: Any) -> None:
        self.status = cycle.status
        self.sent = cycle.bytes_sent
        raw = getattr(cycle, "response_headers", None) or ()
        self.headers = [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in raw]


def _environ(scope: dict) -> dict[str, str]:
    raw_uri = scope["raw_path"].decode("latin-1")
    query = scope["query_string"].decode("latin-1")
    client = scope.get("client")
    environ = {
        "REQUEST_METHOD": scope["method"],
        "RAW_URI": raw_uri + ("?" + query if query else ""),
        "PATH_INFO": scope["path"],
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0] if client else "-",
        "REMOTE_PORT": str(client[1]) if client else "",
    }
    for name, value in scope["headers"]:
        key = "HTTP_" + bytes(name).decode("latin-1").upper().replace("-", "_")
        environ.setdefault(key, bytes(value).decode("latin-1"))
    return environ
