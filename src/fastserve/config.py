"""Every setting, its default and its help text, defined once.

The CLI (``cli.py``), the programmatic API (``fastserve.run``) and the Gunicorn worker all build a
:class:`Config`. Building one only validates values: it never reads files, binds sockets or imports
the application (see ``importer.py``, ``server.py`` and ``logging.py`` for those steps).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

LOOP_CHOICES = ("auto", "asyncio", "uvloop")
HTTP_CHOICES = ("auto", "httptools", "h11")
WS_CHOICES = ("auto", "websockets", "none")
HTTP2_CHOICES = ("auto", "on", "off")
HTTP2_CODEC_CHOICES = ("auto", "zttp", "h2")
HTTP2_CLEARTEXT_CHOICES = ("both", "prior-knowledge", "upgrade", "off")  # gunicorn's names
LIFESPAN_CHOICES = ("auto", "on", "off")
INTERFACE_CHOICES = ("auto", "asgi3", "asgi2")
LOG_FORMAT_CHOICES = ("text", "json")
LOG_LEVEL_CHOICES = ("critical", "error", "warning", "info", "debug", "trace")

DEFAULT_ACCESS_LOG_FORMAT = '%(h)s - "%(r)s" %(s)s %(b)s %(M)sms'


class ConfigError(ValueError):
    """A setting has a value fastserve cannot use. Messages read ``--option-name: what is wrong``;
    ``option`` is the setting's name (the CLI says when its value came from the environment)."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{flag_of(option)}: {problem}")
        self.option = option


def flag_of(name: str) -> str:
    """The command-line spelling of a setting: headers -> --header, ssl_keyfile -> --ssl-keyfile."""
    for f in fields(Config):
        if f.name == name and f.metadata.get("flag"):
            return f.metadata["flag"]
    return "--" + name.replace("_", "-")


def option(
    default: Any,
    help: str,
    *,
    group: str,
    type: Any = None,
    choices: tuple[str, ...] | None = None,
    multiple: bool = False,
    flag: str | None = None,
    is_flag: bool = False,
    envvar: tuple[str, ...] = (),
    cli: bool = True,
    metavar: str | None = None,
) -> Any:
    """Declare one setting. The metadata drives the generated click option."""
    metadata = {
        "help": help,
        "group": group,
        "type": type,
        "choices": choices,
        "multiple": multiple,
        "flag": flag,
        "is_flag": is_flag,
        "envvar": envvar,
        "cli": cli,
        "metavar": metavar,
    }
    if multiple:
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    # The application: an import string "module:attr" or an ASGI callable (programmatic API).
    app: Any = option(None, "The ASGI application.", group="app", cli=False)

    # -- socket -------------------------------------------------------------------------------
    host: str = option("127.0.0.1", "Bind socket to this host.", group="socket")
    port: int = option(8000, "Bind socket to this port (0 picks a free port).", group="socket")
    uds: str | None = option(None, "Bind to a UNIX domain socket.", group="socket", type=str)
    uds_perms: str = option("666", "Permissions (octal) of the --uds socket file, e.g. 660 for owner and group only.", group="socket", metavar="MODE")
    fd: int | None = option(None, "Bind to a socket from this file descriptor.", group="socket", type=int)
    backlog: int = option(2048, "Maximum number of pending connections.", group="socket")
    reuse_port: bool = option(
        False,
        "With --workers: give each worker its own listening socket (SO_REUSEPORT, Linux), so the "
        "kernel spreads new connections evenly across the workers instead of the first to wake taking them.",
        group="socket",
        is_flag=True,
    )

    # -- implementation -----------------------------------------------------------------------
    loop: str = option("auto", "Event loop implementation.", group="impl", choices=LOOP_CHOICES)
    http: str = option("auto", "HTTP/1.1 parser.", group="impl", choices=HTTP_CHOICES)
    ws: str = option("auto", "WebSocket engine (none serves upgrades as plain HTTP).", group="impl", choices=WS_CHOICES)
    lifespan: str = option("auto", "Lifespan protocol.", group="impl", choices=LIFESPAN_CHOICES)
    interface: str = option("auto", "ASGI interface of the application.", group="impl", choices=INTERFACE_CHOICES)

    # -- application ----------------------------------------------------------------------------
    factory: bool = option(False, "Treat APP as a factory: call it with no arguments to get the app.", group="app", is_flag=True)
    app_dir: str = option(".", "Look for APP in this directory (added to sys.path).", group="app")
    root_path: str = option("", "ASGI root_path, for an app mounted below a path prefix.", group="app")
    env_file: str | None = option(None, "Load environment variables from this file before loading APP.", group="app", type=str)

    # -- HTTP ---------------------------------------------------------------------------------
    proxy_headers: bool = option(True, "Honour X-Forwarded-For/-Proto and Forwarded from trusted proxies.", group="http")
    forwarded_allow_ips: str = option(
        "127.0.0.1",
        "Comma-separated IPs or CIDR networks (or *) trusted to send proxy headers.",
        group="http",
        envvar=("FASTSERVE_FORWARDED_ALLOW_IPS", "FORWARDED_ALLOW_IPS"),
    )
    proxy_protocol: bool = option(False, "Expect a PROXY protocol v1/v2 header (HAProxy, AWS NLB) from --forwarded-allow-ips peers.", group="http", is_flag=True)
    server_header: bool = option(True, "Send a default 'server: fastserve' header.", group="http")
    date_header: bool = option(True, "Send a default 'date' header.", group="http")
    headers: list[str] = option((), "Default response header NAME:VALUE (repeatable).", group="http", multiple=True, flag="--header", metavar="NAME:VALUE")
    timeout_keep_alive: float = option(5.0, "Close idle keep-alive connections after this many seconds.", group="http")
    timeout_graceful_shutdown: float = option(30.0, "Seconds to let in-flight requests finish on shutdown.", group="http")
    health_path: str | None = option(None, "Answer GET PATH without the app: 200 while serving, 503 once shutdown has begun.", group="http", type=str, metavar="PATH")
    shutdown_delay: float = option(0.0, "On SIGTERM/SIGINT keep serving (health path already 503) this many seconds before closing the listeners, so load balancers drain first.", group="http")
    timeout_request_header: float = option(10.0, "Answer 408 and close when a request head takes longer than this to arrive.", group="http")
    timeout_request_body: float = option(60.0, "Answer 408 and close when the request body stalls this long while the app waits for it.", group="http")
    limit_concurrency: int | None = option(None, "Answer 503 when more requests than this are in flight.", group="http", type=int)
    limit_connections: int | None = option(None, "Stop accepting connections above this many; resume below it.", group="http", type=int)
    limit_request_line: int = option(8190, "Longest request line accepted (414 above it).", group="http")
    limit_request_headers_size: int = option(65536, "Largest header section accepted, in bytes (431 above it).", group="http")
    limit_request_fields: int = option(100, "Most header fields accepted (431 above it).", group="http")
    # 64 KiB: the form or JSON body an auth middleware refuses unread fits; it is what the server
    # buffers per request anyway before reading pauses (cycle.BODY_HIGH_WATER), one or two reads.
    # Larger bodies cost the client a new connection instead of the server a long upload nobody reads.
    limit_drain_body: int = option(
        65536,
        "After a response, read and discard at most this much request body the app left unread, "
        "within --timeout-keep-alive, to keep the connection alive; close instead when more is to come.",
        group="http",
    )
    timeout_linger: float = option(
        5.0,
        "After refusing a request or closing with input unread, read and discard what the client "
        "still sends for at most this many seconds, so it receives the answer instead of a reset (0: close at once).",
        group="http",
    )
    # 30 s as --http2-timeout-window: long enough for a slow link or a client busy for a while,
    # short next to what a stopped reader would otherwise hold (the connection, for ever).
    timeout_write: float = option(
        30.0,
        "Abort a connection that has read nothing of what we send for this many seconds (its send "
        "buffer stays full: a response, a file or WebSocket messages it stopped reading); 0 disables.",
        group="http",
    )
    limit_request_body: int | None = option(None, "Largest request body accepted, in bytes (413 above it; default: no limit, bodies are streamed).", group="http", type=int)

    # -- WebSocket ------------------------------------------------------------------------------
    ws_max_size: int = option(16 * 1024 * 1024, "Largest WebSocket message accepted, in bytes (1009 above it).", group="ws")
    ws_max_queue: int = option(32, "Received WebSocket messages queued before reading pauses.", group="ws")
    ws_max_queue_size: int = option(
        1024 * 1024,
        "Received WebSocket bytes queued (or sent before the app accepts) before reading pauses; one message is always taken.",
        group="ws",
    )
    ws_ping_interval: float | None = option(20.0, "Seconds between WebSocket pings (0 disables).", group="ws", type=float)
    ws_ping_timeout: float | None = option(20.0, "Seconds to wait for a pong before closing with 1011.", group="ws", type=float)
    ws_per_message_deflate: bool = option(True, "Offer permessage-deflate compression.", group="ws")
    ws_deflate_threshold: int = option(
        1024,
        "With permessage-deflate, messages the app sends below this many bytes go out uncompressed (0: compress every message).",
        group="ws",
    )
    ws_deflate_level: int = option(1, "zlib level of permessage-deflate compression: 1 (least CPU) to 9 (smallest).", group="ws")
    timeout_ws_handshake: float = option(10.0, "Answer 503 when the app has not accepted or refused a WebSocket within this many seconds.", group="ws")

    # -- HTTP/2 -------------------------------------------------------------------------------
    http2: str = option(
        "auto",
        "HTTP/2: TLS ALPN 'h2', cleartext prior knowledge and the h2c Upgrade. auto: on when an HTTP/2 codec is installed (pip install 'fastserve[http2]'); on: fail to start without one.",
        group="http2",
        choices=HTTP2_CHOICES,
    )
    http2_cleartext: str = option(
        "both",
        "HTTP/2 without TLS: 'prior-knowledge' (a connection opening with the HTTP/2 preface), 'upgrade' (an HTTP/1.1 'Upgrade: h2c' request), both, or off (TLS ALPN only).",
        group="http2",
        choices=HTTP2_CLEARTEXT_CHOICES,
    )
    http2_codec: str = option("auto", "HTTP/2 codec: zttp (compiled) or h2 (pure Python); auto prefers zttp when it can advertise the settings below.", group="http2", choices=HTTP2_CODEC_CHOICES)
    http2_max_concurrent_streams: int = option(128, "Streams one HTTP/2 client may have open at once (more are refused with REFUSED_STREAM).", group="http2")
    http2_initial_window_size: int = option(65535, "HTTP/2 receive window per stream, in bytes: the request body buffered for an app that has not read it.", group="http2")
    http2_max_frame_size: int = option(16384, "Largest HTTP/2 frame payload accepted, in bytes (16384 to 16777215).", group="http2")
    http2_max_header_list_size: int = option(65536, "Largest HTTP/2 request header list accepted (uncompressed, RFC 9113 6.5.2).", group="http2")
    http2_timeout_window: float = option(30.0, "Reset an HTTP/2 stream whose response waited this many seconds without the client granting flow-control window (a client that never reads).", group="http2")
    http2_max_resets: int = option(200, "Resets of streams still being served one HTTP/2 client may send in 10 seconds; past it the connection ends with GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).", group="http2")
    http2_max_control_frames: int = option(1000, "Frames without progress one HTTP/2 client may send in 10 seconds (PING, SETTINGS, PRIORITY, empty DATA, WINDOW_UPDATE nothing waits for, frames on closed streams, streams refused); past it the connection ends with GOAWAY ENHANCE_YOUR_CALM (control-frame floods).", group="http2")

    # -- TLS ----------------------------------------------------------------------------------
    ssl_keyfile: str | None = option(None, "TLS private key file.", group="tls", type=str)
    ssl_certfile: str | None = option(None, "TLS certificate file.", group="tls", type=str)
    ssl_keyfile_password: str | None = option(None, "Password for the TLS private key.", group="tls", type=str)
    ssl_ca_certs: str | None = option(None, "CA certificates file (for client certificates).", group="tls", type=str)
    ssl_cert_reqs: int = option(int(ssl.CERT_NONE), "Client certificate requirement: 0 none, 1 optional, 2 required.", group="tls")
    ssl_ciphers: str | None = option(None, "TLS ciphers (OpenSSL syntax); default: Python's.", group="tls", type=str)

    # -- logging ------------------------------------------------------------------------------
    log_level: str = option("info", "Log level.", group="logging", choices=LOG_LEVEL_CHOICES)
    access_log: bool = option(True, "Write an access log line per response.", group="logging")
    access_log_format: str = option(DEFAULT_ACCESS_LOG_FORMAT, "Access log format (gunicorn atoms, e.g. %(h)s %(r)s %(s)s %(D)s).", group="logging")
    log_config: str | None = option(None, "Logging configuration file (.json, .yaml or .ini).", group="logging", type=str)
    log_format: str = option("text", "Log line format: text, or json (one JSON object per line, for Loki/ELK).", group="logging", choices=LOG_FORMAT_CHOICES)
    metrics_bind: str | None = option(None, "Serve Prometheus metrics at http://HOST:PORT/metrics (needs fastserve[metrics]); off by default.", group="logging", type=str, metavar="HOST:PORT")
    use_colors: bool | None = option(None, "Colour log level names (default: when writing to a terminal).", group="logging", type=bool)

    # -- development and process management -----------------------------------------------------
    reload: bool = option(False, "Restart the server when files change (development).", group="reload", is_flag=True)
    reload_dirs: list[str] = option((), "Directory to watch (repeatable; default: current directory).", group="reload", multiple=True, flag="--reload-dir")
    reload_includes: list[str] = option(("*.py",), "Glob of files to watch (repeatable).", group="reload", multiple=True, flag="--reload-include")
    reload_excludes: list[str] = option(
        (".*", "*.py[cod]", ".git", "__pycache__", ".venv", "venv", ".tox", "*~"),
        "Glob of files or directories to ignore (repeatable).",
        group="reload",
        multiple=True,
        flag="--reload-exclude",
    )
    reload_delay: float = option(0.25, "Seconds to wait for more changes before reloading.", group="reload")
    workers: int | None = option(None, "Number of worker processes (default: $WEB_CONCURRENCY or 1).", group="workers", type=int, envvar=("FASTSERVE_WORKERS", "WEB_CONCURRENCY"))
    limit_max_requests: int | None = option(None, "Restart a worker after it has served this many requests.", group="workers", type=int)
    limit_max_requests_jitter: int = option(0, "Add up to this many requests at random to --limit-max-requests.", group="workers")
    timeout_worker_healthcheck: float = option(30.0, "Replace a worker whose event loop has not run for this many seconds (a blocking app); 0 disables.", group="workers")

    def __post_init__(self) -> None:
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f.name, f"must be one of {', '.join(choices)}; got {getattr(self, f.name)!r}")
        self.headers = list(self.headers)
        self._check_ranges()
        if self.uds and self.fd is not None:
            raise ConfigError("uds", "use only one of --uds and --fd")
        if self.health_path is not None and not self.health_path.startswith("/"):
            raise ConfigError("health_path", f"must start with /; got {self.health_path!r}")
        try:
            mode = int(self.uds_perms, 8)
        except (TypeError, ValueError):
            mode = -1
        if not 0 <= mode <= 0o777:
            raise ConfigError("uds_perms", f"must be an octal mode such as 660; got {self.uds_perms!r}")
        if self.metrics_bind is not None:
            try:
                parse_bind(self.metrics_bind)
            except ValueError as exc:
                raise ConfigError("metrics_bind", str(exc)) from None
        if self.proxy_protocol and self.ssl_certfile:
            raise ConfigError("proxy_protocol", "cannot be used with --ssl-certfile (the header comes before the TLS handshake); let the proxy terminate TLS")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError("ssl_keyfile", "needs --ssl-certfile too")
        try:
            settings = self.http2_settings()
        except ValueError as exc:
            raise ConfigError("http2_max_frame_size", str(exc)) from None
        if self.http2_codec == "zttp" and self.http2 != "off" and not settings.defaults_but_connect_protocol():
            # zttp 0.0.x advertises fixed SETTINGS (H2Settings' defaults): say so now, not at
            # the first HTTP/2 connection.
            raise ConfigError("http2_codec", "zttp advertises fixed HTTP/2 settings (the --http2-* defaults); use --http2-codec h2 or auto to change them")
        self.default_headers = [parse_header_option(h) for h in self.headers]
        self.trusted_proxies = TrustedProxies(self.forwarded_allow_ips)

    def _check_ranges(self) -> None:
        positive = ("limit_request_line", "limit_request_headers_size", "limit_request_fields", "backlog", "ws_max_size", "ws_max_queue", "ws_max_queue_size", "http2_max_resets", "http2_max_control_frames")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be positive; got {getattr(self, name)!r}")
        if not 1 <= self.ws_deflate_level <= 9:
            raise ConfigError("ws_deflate_level", f"must be between 1 and 9; got {self.ws_deflate_level!r}")
        non_negative = ("ws_deflate_threshold", "timeout_keep_alive", "timeout_graceful_shutdown", "timeout_linger", "reload_delay", "limit_max_requests_jitter", "limit_drain_body", "shutdown_delay", "timeout_worker_healthcheck", "timeout_write")
        for name in ("timeout_request_header", "timeout_request_body", "timeout_ws_handshake", "http2_timeout_window"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be positive; got {getattr(self, name)!r}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must not be negative; got {getattr(self, name)!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"must be between 0 and 65535; got {self.port!r}")
        if self.reuse_port and not hasattr(socket, "SO_REUSEPORT"):
            raise ConfigError("reuse_port", "this platform has no SO_REUSEPORT")
        for name in ("limit_concurrency", "limit_connections", "workers", "limit_max_requests", "limit_request_body"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, f"must be at least 1; got {value!r}")

    def http2_settings(self) -> Any:
        """The SETTINGS an HTTP/2 connection advertises (an http2.codec.H2Settings; ValueError)."""
        from .http2.codec import H2Settings

        return H2Settings(
            max_concurrent_streams=self.http2_max_concurrent_streams,
            initial_window_size=self.http2_initial_window_size,
            max_frame_size=self.http2_max_frame_size,
            max_header_list_size=self.http2_max_header_list_size,
            enable_connect_protocol=self.ws != "none",  # RFC 8441: only while WebSockets are on
        )

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_certfile)

    def bind_description(self) -> str:
        if self.uds:
            return f"unix socket {self.uds}"
        if self.fd is not None:
            return f"socket from fd {self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.is_ssl else 'http'}://{host}:{self.port}"

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Config(**values)


def option_fields() -> list:
    """The settings the CLI exposes, in declaration order."""
    return [f for f in fields(Config) if f.metadata.get("cli")]


def default_of(name: str) -> Any:
    f = next(f for f in fields(Config) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default


def parse_header_option(text: str) -> tuple[bytes, bytes]:
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise ConfigError("headers", f"must look like NAME:VALUE; got {text!r}")
    raw_name, raw_value = name.lower().encode("latin-1"), value.encode("latin-1")
    if any(c in raw_name for c in b"\r\n\0 :\t") or any(c in raw_value for c in b"\r\n\0"):
        raise ConfigError("headers", f"CR, LF, NUL (or a space, tab or colon in the name) are not allowed; got {text!r}")
    return raw_name, raw_value


def parse_bind(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[IPv6]:PORT', ':PORT' or 'PORT' -> (host, port); host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT; got {text!r}")
    return host, int(port)


class TrustedProxies:
    """Which peers may set X-Forwarded-* / Forwarded. UNIX-socket peers are always trusted
    (only local processes can reach them), as Gunicorn does."""

    def __init__(self, spec: str) -> None:
        items = [item.strip() for item in spec.split(",") if item.strip()]
        self.everyone = "*" in items
        self.addresses: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in items:
            if item == "*":
                continue
            try:
                if "/" in item:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self.addresses.add(str(ipaddress.ip_address(item)))
            except ValueError:
                raise ConfigError("forwarded_allow_ips", f"{item!r} is not an IP address or network") from None

    def __contains__(self, host: str | None) -> bool:
        if self.everyone or host is None:
            return True
        if host in self.addresses:
            return True
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)
