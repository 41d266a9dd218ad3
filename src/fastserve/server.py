"""Sockets, signals, the connection registry and graceful shutdown for one server process."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import signal
import socket
import ssl
import stat
import time
from collections import deque
from typing import Any

from .asgi.app_runner import APP_TASK_NAME
from .config import Config
from .http1 import parser_class
from .importer import AppImportError, load_app
from .lifespan import Lifespan
from .logging import TRACE, AccessLog, trace_asgi
from .negotiate import alpn_protocols, connection_factory, http2_codec

# Moved to state.py; re-exported for existing imports (tests, benchmarks, feature layers).
from .state import FILE_RESERVE, ServerState, connections_files_allow, open_file_limit  # noqa: F401
from .tls import TLSInfo

logger = logging.getLogger("fastserve.error")

# Exit statuses (README "Exit statuses"). 2 is a bad option value (click's usage error).
EXIT_SETUP = 1  # the address cannot be bound, TLS files cannot be loaded
EXIT_APP = 3  # APP cannot be imported or is not an ASGI app, or lifespan startup failed (as uvicorn)
STARTUP_FAILURE = EXIT_APP
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How often a graceful shutdown checks whether the apps still running after their response are done.
APP_WAIT_POLL = 0.05
# A state that can flap (accepting connections or not) is logged at most this often; changes in
# between are counted and summed up in one line.
STATE_LOG_INTERVAL = 10.0


class Server:
    # Subclasses that manage signals themselves (the Gunicorn worker) set this to ().
    handled_signals: tuple[int, ...] = HANDLED_SIGNALS
    # The start-up line per socket, and what the graceful-shutdown wait line adds: a process
    # whose Ctrl+C is not its own (a Gunicorn worker) says neither.
    running_message = "fastserve running on %s (Press CTRL+C to quit)"
    force_exit_hint = "; press CTRL+C again to force the exit"
    # --metrics-bind: whether this process serves the metrics address (a --workers child does not:
    # its supervisor serves every worker's sum), and with SO_REUSEPORT (Gunicorn's workers all do).
    serves_metrics = True
    metrics_reuse_port = False

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state: ServerState | None = None
        self.listeners: Listeners | None = None
        self.started = False
        self.exit_code = 0
        self.should_exit = False
        self.force_exit = False
        self.delay_shutdown = True  # --shutdown-delay, unless the exit is --limit-max-requests's
        self._exit_requested: asyncio.Future | None = None
        self._force_requested: asyncio.Future | None = None
        self._date_timer: asyncio.TimerHandle | None = None
        self.bound_addresses: list[Any] = []
        self.metrics: Any = None

    def run(self, sockets: list[socket.socket] | None = None) -> int:
        run_coroutine(self.serve(sockets), self.config.loop)
        return self.exit_code

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._exit_requested = loop.create_future()
        self._force_requested = loop.create_future()
        if self.should_exit:
            self._exit_requested.set_result(None)
        installed = self._install_signal_handlers(loop)
        try:
            await self._serve(sockets)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def _serve(self, sockets: list[socket.socket] | None) -> None:
        """Load, check TLS and bind before lifespan startup: a mistake in any of them is one
        line and an exit status (see EXIT_* above), and the app never starts for nothing."""
        config = self.config
        logger.info("Started server process [%d]", os.getpid())
        try:
            app = load_app(config)
        except AppImportError as exc:
            logger.error("%s", exc)
            self.exit_code = EXIT_APP
            return
        if logger.isEnabledFor(TRACE):
            app = trace_asgi(app)
        ws_handler = _ws_handler(config, app)  # before lifespan: it may refuse to start (--ws websockets)
        try:
            http2_codec(config)  # --http2 on, or a named codec, without the library: one line, no start
        except ImportError as exc:
            logger.error("%s", exc)
            self.exit_code = EXIT_SETUP
            return
        try:
            ssl_context = create_ssl_context(config) if config.is_ssl else None
        except TLSSetupError as exc:
            logger.error("TLS setup failed: %s", exc)
            self.exit_code = EXIT_SETUP
            return
        endpoint = await self._start_metrics() if config.metrics_bind else None
        if self.exit_code:
            return
        try:
            await self._bind_and_serve(app, sockets, ssl_context, ws_handler)
        finally:
            if endpoint is not None:
                endpoint.close()

    async def _bind_and_serve(self, app: Any, sockets: list[socket.socket] | None, ssl_context: Any, ws_handler: Any) -> None:
        config = self.config
        own_sockets = sockets is None
        if own_sockets:
            try:
                sockets = bind_sockets(config)
            except OSError as exc:
                logger.error("%s", bind_error_message(config, exc))
                self.exit_code = EXIT_SETUP
                return
        logger.info("%s", describe_implementation(config, ws_handler))
        try:
            await self._start_and_serve(app, sockets, ssl_context, ws_handler)
        finally:
            if own_sockets:
                close_own_sockets(config, sockets)

    async def _start_and_serve(self, app: Any, sockets: list[socket.socket], ssl_context: Any, ws_handler: Any) -> None:
        config = self.config
        lifespan = Lifespan(app, config.lifespan)
        if not await lifespan.startup():
            self.exit_code = EXIT_APP
            return
        self.state = ServerState(config, lifespan.state, self.create_access_log(), ws_handler)
        if ssl_context is not None:
            self.state.tls = TLSInfo(ssl_context, config.ssl_certfile)
        self._arm_request_limit()
        try:
            await self._listen(app, sockets, ssl_context)
        except OSError as exc:
            logger.error("Could not listen on %s: %s", config.bind_description(), exc)
            self.exit_code = EXIT_SETUP
            await lifespan.shutdown(config.timeout_graceful_shutdown)
            return
        self._tick_date()
        self.started = True
        self.on_started()
        await self._exit_requested
        await self.shutdown(lifespan)

    async def _start_metrics(self) -> Any:
        """--metrics-bind: this process's metrics, and the metrics address if it serves it."""
        from . import metrics

        problem = metrics.missing_dependency()
        if problem:
            logger.error("%s", problem)
            self.exit_code = EXIT_SETUP
            return None
        self.metrics = metrics.enable()
        if not self.serves_metrics:
            return None
        if self.metrics_reuse_port and not self.metrics.multiprocess:
            logger.warning("--metrics-bind under Gunicorn without %s: each scrape shows one worker's numbers", metrics.MULTIPROC_ENV)
        endpoint = metrics.MetricsEndpoint(self.config.metrics_bind, self.metrics.serving_registry(), self.metrics_reuse_port)
        try:
            await endpoint.start()
        except OSError as exc:
            logger.error("Could not bind the metrics address %s (--metrics-bind): %s", self.config.metrics_bind, exc.strerror or exc)
            self.exit_code = EXIT_SETUP
            return None
        return endpoint

    # -- hooks for supervisors and the Gunicorn worker ------------------------------------------
    def on_started(self) -> None:
        """Called once every socket is listening (a worker tells its supervisor it is ready)."""

    def create_access_log(self) -> Any:
        """The access log object: ``log(conn, cycle)`` per response, or None when disabled."""
        return AccessLog.create(self.config)

    def _arm_request_limit(self) -> None:
        limit = self.config.limit_max_requests
        if limit is None:
            return
        self.state.request_limit = limit + random.randint(0, self.config.limit_max_requests_jitter)
        self.state.request_limit_reached = self._request_limit_reached

    def _request_limit_reached(self) -> None:
        logger.info("Served %d requests (--limit-max-requests); shutting down gracefully.", self.state.request_limit)
        self.delay_shutdown = False  # nobody is draining this process: its supervisor replaces it
        self.request_exit()

    async def _listen(self, app: Any, sockets: list[socket.socket] | None, ssl_context: ssl.SSLContext | None) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        state = self.state
        factory = connection_factory(config, app, state, loop)
        self.listeners = Listeners(factory, sockets, ssl_context, config)
        state.accepting = self.listeners
        await self.listeners.start()
        for sock in sockets:
            self.bound_addresses.append(sock.getsockname())
            logger.info(self.running_message, describe_socket(sock, config))

    async def shutdown(self, lifespan: Lifespan | None = None) -> None:
        if self.state is not None:
            self.state.shutting_down = True
        await self._shutdown_delay()
        logger.info("Shutting down")
        if self._date_timer is not None:
            self._date_timer.cancel()
        state = self.state
        if state is not None:
            state.shutting_down = True
        if self.listeners is not None:
            self.listeners.close()
        if state is not None:
            deadline = asyncio.get_running_loop().time() + self.config.timeout_graceful_shutdown
            for conn in list(state.connections):
                conn.shutdown()
            if state.connections and not self.force_exit:
                logger.info("Waiting for %d connection(s) to finish (at most %ss%s)", len(state.connections), self.config.timeout_graceful_shutdown, self.force_exit_hint)
                done, _ = await asyncio.wait(
                    (state.all_closed(), self._force_requested),
                    timeout=self.config.timeout_graceful_shutdown,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    logger.warning("Graceful shutdown timed out; closing %d connection(s)", len(state.connections))
            for conn in list(state.connections):
                conn.abort()
            await asyncio.sleep(0)  # let cancelled app tasks run their cleanup
            await self._wait_for_apps(state, deadline)
        if lifespan is not None and not self.force_exit:
            await lifespan.shutdown(self.config.timeout_graceful_shutdown)
        logger.info("Finished server process [%d]", os.getpid())

    async def _wait_for_apps(self, state: ServerState, deadline: float) -> None:
        """Apps still running once their connections are gone: a response is sent and the app
        goes on (Starlette's BackgroundTasks, work after the last send), or its client left.
        They get what is left of --timeout-graceful-shutdown, as connections do (uvicorn waits
        for them too), then are cancelled; left alone, they would die with the event loop."""
        running = state.active_requests
        if not running:
            return
        loop = asyncio.get_running_loop()
        if not self.force_exit and loop.time() < deadline:
            logger.info("Waiting for %d app(s) still running after their response (at most %.1fs%s)",
                        running, deadline - loop.time(), self.force_exit_hint)
            while state.active_requests and not self.force_exit and loop.time() < deadline:
                await asyncio.wait((self._force_requested,), timeout=min(APP_WAIT_POLL, deadline - loop.time()))
        if state.active_requests:
            logger.warning("Graceful shutdown timed out; cancelling %d app(s) still running", state.active_requests)
            for task in asyncio.all_tasks():
                if task.get_name() == APP_TASK_NAME and not task.done():
                    task.cancel()
            await asyncio.sleep(0)  # let them run their cleanup

    async def _shutdown_delay(self) -> None:
        """--shutdown-delay: keep serving (health path already 503) while load balancers notice."""
        delay = self.config.shutdown_delay
        if not delay or not self.delay_shutdown or self.force_exit or self.listeners is None:
            return
        logger.info("Shutdown requested; serving %ss more (--shutdown-delay) before closing the listeners%s", delay, self.force_exit_hint)
        await asyncio.wait((self._force_requested,), timeout=delay)

    # -- signals --------------------------------------------------------------------------------
    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed = []
        for sig in self.handled_signals:
            try:
                loop.add_signal_handler(sig, self.handle_exit, sig)
            except (ValueError, RuntimeError, NotImplementedError):
                break  # not the main thread (tests, embedding): the caller stops us with request_exit()
            installed.append(sig)
        return installed

    def handle_exit(self, sig: int = signal.SIGTERM) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
            if self._force_requested is not None and not self._force_requested.done():
                self._force_requested.set_result(None)
        self.request_exit()

    def request_exit(self) -> None:
        self.should_exit = True
        if self._exit_requested is not None and not self._exit_requested.done():
            self._exit_requested.set_result(None)

    def quit_now(self) -> None:
        """Stop without the graceful wait and skip lifespan shutdown (a second Ctrl+C)."""
        self.should_exit = True
        self.handle_exit(signal.SIGINT)

    def _tick_date(self) -> None:
        self.state.refresh_default_headers()
        if self.metrics is not None:
            self.metrics.sample(self.state)  # gauges once a second, not per request
        delay = 1.0 - (time.time() % 1.0)  # wake just after each second boundary
        self._date_timer = asyncio.get_running_loop().call_later(delay, self._tick_date)


class Listeners:
    """The listening sockets and their asyncio servers; paused at ServerState.max_connections.

    Each asyncio server gets a duplicate of its socket: closing the server to stop accepting leaves
    the real socket listening, so new clients wait in its backlog.
    """

    def __init__(self, factory: Any, sockets: list[socket.socket], ssl_context: Any, config: Config) -> None:
        self.factory = factory
        self.sockets = sockets
        self.ssl_context = ssl_context
        self.backlog = config.backlog
        self.limit = config.limit_connections
        self.servers: list[Any] = []
        self.paused = False
        self.closed = False
        self.starting: asyncio.Task | None = None  # a resume() still creating its servers
        self.state_log = RateLimitedLog(logger, burst=2)
        self.accept_error_log = RateLimitedLog(logger, burst=1)
        quiet_accept_errors(asyncio.get_running_loop(), self.accept_error_log)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            server = await loop.create_server(self.factory, sock=sock.dup(), ssl=self.ssl_context, backlog=self.backlog)
            if self.paused or self.closed:  # paused again while we were starting
                server.close()
            else:
                self.servers.append(server)

    def pause(self, open_connections: int) -> None:
        if self.paused or self.closed:
            return
        self.paused = True
        if self.limit is not None and open_connections >= self.limit:
            reason = f"Connection limit of {self.limit} reached"
        else:
            reason = f"Open-file limit nearly reached ({open_connections} connections, RLIMIT_NOFILE {open_file_limit()})"
        self.state_log.log(logging.WARNING, f"{reason}; not accepting new connections.")
        self._close_servers()

    def resume(self) -> None:
        if not self.paused or self.closed:
            return
        self.paused = False
        self.state_log.log(logging.INFO, "Below the connection limit again; accepting connections.")
        if self.starting is None or self.starting.done():  # else that one serves, as not paused now
            self.starting = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        try:
            await self.start()
        except OSError as exc:  # no file left even for a socket's duplicate (EMFILE)
            self._close_servers()
            self.paused = True
            self.state_log.log(logging.WARNING, f"Cannot accept connections: {exc}; retrying in 1 s.")
            asyncio.get_running_loop().call_later(1.0, self.resume)

    def close(self) -> None:
        self.closed = True
        self._close_servers()
        self.state_log.close()
        self.accept_error_log.close()
        for sock in self.sockets:
            sock.close()  # stop listening: new clients are refused, not left in the backlog

    def _close_servers(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()


class RateLimitedLog:
    """Log lines for something that can flap or repeat fast: at most ``burst`` lines per
    STATE_LOG_INTERVAL. Lines past that are counted; once the interval allows, the latest one is
    logged with that count, so the last line logged always tells the current state."""

    def __init__(self, log: logging.Logger, burst: int) -> None:
        self.logger = log
        self.recent: deque[float] = deque(maxlen=burst)  # when the last lines were logged
        self.latest: tuple[int, str] | None = None
        self.unlogged = 0
        self.timer: asyncio.TimerHandle | None = None

    def log(self, level: int, message: str) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.latest = (level, message)
        if len(self.recent) < self.recent.maxlen or now - self.recent[0] >= STATE_LOG_INTERVAL:
            self._emit(now)
            return
        self.unlogged += 1
        if self.timer is None:
            self.timer = loop.call_at(self.recent[0] + STATE_LOG_INTERVAL, self._flush)

    def _flush(self) -> None:
        self.timer = None
        self._emit(asyncio.get_running_loop().time())

    def _emit(self, now: float) -> None:
        level, message = self.latest
        if self.unlogged:
            message = f"{message} ({self.unlogged} more times in the last {STATE_LOG_INTERVAL:g} s)"
            self.unlogged = 0
        self.recent.append(now)
        self.logger.log(level, message)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, log: RateLimitedLog) -> None:
    """asyncio logs a traceback for each accept() that fails for want of files or memory (up to
    --backlog of them per wakeup, every second: hundreds of thousands of lines), then retries after
    a second. Log one line instead, rate-limited. (uvloop logs nothing: libuv closes the waiting
    connections instead; ServerState.max_connections keeps both loops away from the limit.)"""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        if context.get("message") == "socket.accept() out of system resource" and isinstance(exc, OSError):
            if exc.errno in _OUT_OF_FILES:
                log.log(logging.WARNING, f"Cannot accept connections: {exc.strerror} ({errno.errorcode.get(exc.errno, exc.errno)}); retrying in 1 s.")
                return
        if isinstance(exc, ValueError) and _callback_name(context.get("handle")) == "_start_serving":
            return  # that retry, for a server closed since (paused, or shutting down): nothing to do
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _callback_name(handle: Any) -> str:
    return getattr(getattr(handle, "_callback", None), "__name__", "")


def _ws_handler(config: Config, app: Any) -> Any:
    from .websocket import upgrade_handler

    return upgrade_handler(config, app)


def bind_sockets(config: Config) -> list[socket.socket]:
    """The listening sockets: systemd's (socket activation) unless --fd or --uds says otherwise,
    else one bound as the config describes."""
    if config.fd is None and not config.uds:
        from .activation import systemd_sockets

        activated = systemd_sockets()
        if activated:
            return activated
    return [bind_socket(config)]


def bind_socket(config: Config) -> socket.socket:
    """Bind the listening socket described by the config (also used by the supervisors)."""
    if config.fd is not None:
        sock = socket.socket(fileno=config.fd)
    elif config.uds:
        path = config.uds
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, int(config.uds_perms, 8))
    else:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        infos = socket.getaddrinfo(config.host, config.port, family, socket.SOCK_STREAM)
        return bind_tcp(family, infos[0][4], config.backlog, config.reuse_port)
    if sock.type == socket.SOCK_STREAM and sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(config.backlog)
    sock.set_inheritable(True)
    return sock


def bind_tcp(family: int, address: Any, backlog: int, reuse_port: bool) -> socket.socket:
    """A listening TCP socket; with ``reuse_port``, in the SO_REUSEPORT group of its address (the
    kernel spreads new connections across the group's sockets)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def has_reuse_port(sock: socket.socket) -> bool:
    """Whether ``sock`` is a TCP socket with SO_REUSEPORT set (not a UNIX socket, nor one from
    --fd or systemd without it), so another may listen on its address beside it."""
    return sock.family in (socket.AF_INET, socket.AF_INET6) and bool(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    )


def describe_socket(sock: socket.socket, config: Config) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix socket {sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if config.is_ssl else 'http'}://{host}:{port}"


class TLSSetupError(Exception):
    """The TLS settings cannot be used; the message names the option and the file."""


def create_ssl_context(config: Config) -> ssl.SSLContext:
    for option, path in (("--ssl-certfile", config.ssl_certfile), ("--ssl-keyfile", config.ssl_keyfile), ("--ssl-ca-certs", config.ssl_ca_certs)):
        if path and not os.path.isfile(path):
            raise TLSSetupError(f"{option} {path!r}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password)
    except (OSError, ValueError) as exc:
        raise TLSSetupError(_cert_chain_problem(config, exc)) from None
    context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(config.ssl_ca_certs)
        except (OSError, ValueError) as exc:
            raise TLSSetupError(f"--ssl-ca-certs {config.ssl_ca_certs!r} holds no usable CA certificate ({exc})") from None
    if config.ssl_ciphers:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise TLSSetupError(f"--ssl-ciphers {config.ssl_ciphers!r} selects no cipher OpenSSL knows") from None
    context.set_alpn_protocols(alpn_protocols(config))
    return context


def _cert_chain_problem(config: Config, exc: Exception) -> str:
    """Which file is wrong: OpenSSL's own message rarely says."""
    certfile, keyfile = config.ssl_certfile, config.ssl_keyfile
    if "BEGIN CERTIFICATE" not in _read_text(certfile):
        return f"--ssl-certfile {certfile!r} holds no PEM certificate"
    key_source = keyfile or certfile
    key_text = _read_text(key_source)
    if "PRIVATE KEY" not in key_text:
        option = "--ssl-keyfile" if keyfile else "--ssl-certfile (no --ssl-keyfile given)"
        return f"{option} {key_source!r} holds no PEM private key"
    if "ENCRYPTED" in key_text and not config.ssl_keyfile_password:
        return f"{key_source!r} is encrypted: give --ssl-keyfile-password"
    reason = str(getattr(exc, "reason", "") or exc)
    if "KEY_VALUES_MISMATCH" in reason:
        return f"the private key in {key_source!r} does not match the certificate in {certfile!r}"
    if config.ssl_keyfile_password and "ENCRYPTED" in key_text:
        return f"--ssl-keyfile-password cannot decrypt {key_source!r} ({reason})"
    return f"cannot load --ssl-certfile {certfile!r} with key {key_source!r}: {reason}"


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def bind_error_message(config: Config, exc: OSError) -> str:
    """One line saying what could not be bound and what to do about it."""
    where = config.bind_description()
    if exc.errno == errno.EADDRINUSE:
        if config.uds:
            return f"Could not bind {where}: it is in use by another process."
        return (f"Could not bind {where}: the address is already in use (another server?). "
                f"Choose another port with --port (or make run PORT=...).")
    if exc.errno == errno.EACCES and not config.uds and 0 < config.port < 1024:
        return f"Could not bind {where}: ports below 1024 need privileges; use --port 8000 or another port above 1023."
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"Could not bind {where}: {config.host} is not an address of this machine (--host)."
    return f"Could not bind {where}: {exc.strerror or exc}"


def close_own_sockets(config: Config, sockets: list[socket.socket]) -> None:
    """Close sockets this process bound; a UNIX socket file is removed, as the supervisors do."""
    for sock in sockets:
        sock.close()
    if config.uds:
        try:
            if stat.S_ISSOCK(os.stat(config.uds).st_mode):
                os.unlink(config.uds)
        except OSError:
            pass


def describe_implementation(config: Config, ws_handler: Any) -> str:
    """Which loop, parser and WebSocket engine serve: 'auto' choices are shown as chosen."""
    loop = "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
    parser = "httptools" if parser_class(config.http).__name__ == "HttptoolsParser" else "h11"
    ws = "websockets" if ws_handler is not None else "none (upgrades served as plain HTTP)"
    chosen = [(name, value, getattr(config, key) == "auto") for key, name, value in
              (("loop", "event loop", loop), ("http", "HTTP parser", parser), ("ws", "WebSocket", ws))]
    return "Using " + ", ".join(f"{name} {value}{' (auto)' if auto else ''}" for name, value, auto in chosen)


def loop_factory(name: str):
    """The event loop factory for --loop; 'auto' prefers uvloop when it is installed."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_coroutine(coro: Any, loop_name: str) -> Any:
    factory = loop_factory(loop_name)
    if hasattr(asyncio, "Runner"):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)
    loop = factory()  # Python 3.10
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
        asyncio.set_event_loop(None)
