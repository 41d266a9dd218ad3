"""Log configuration and the access log (gunicorn-style format atoms)."""

from __future__ import annotations

import collections.abc
import configparser
import json
import logging
import logging.config
import os
import sys
import time
from typing import Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVEL_COLOURS = {
    "TRACE": "\x1b[34m",
    "DEBUG": "\x1b[36m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;31m",
}


class LevelFormatter(logging.Formatter):
    """``INFO:     message``, with the level name coloured when writing to a terminal.

    In a ``--workers`` child every line carries the worker's pid: ``INFO:     [1234] message``."""

    process_tag = ""  # set once in a worker process, before logging is configured

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, use_colors: bool | None = None) -> None:
        super().__init__(fmt or "%(levelprefix)s %(message)s", datefmt)
        self.use_colors = sys.stderr.isatty() if use_colors is None else use_colors

    def formatMessage(self, record: logging.LogRecord) -> str:
        prefix = f"{record.levelname}:".ljust(9)
        if self.use_colors:
            prefix = f"{_LEVEL_COLOURS.get(record.levelname, '')}{record.levelname}\x1b[0m:".ljust(9 + 9)
        record.levelprefix = f"{prefix} {self.process_tag}" if self.process_tag else prefix
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one JSON object per line - timestamp (UTC, ISO 8601), level, logger,
    message, pid, the traceback as ``exception`` - plus an access line's fields (see JsonAccessLog)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        fields = getattr(record, "access", None)
        if fields is not None:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _iso_time(created: float) -> str:
    seconds = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(created % 1 * 1000):03d}Z"


def default_logging_config(use_colors: bool | None, log_format: str = "text") -> dict[str, Any]:
    if log_format == "json":
        formatter: dict[str, Any] = {"()": "fastserve.logging.JsonFormatter"}
    else:
        formatter = {"()": "fastserve.logging.LevelFormatter", "use_colors": use_colors}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter, "access": dict(formatter)},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "fastserve": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "fastserve.error": {"level": "INFO"},
            "fastserve.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def configure_logging(config: Any) -> None:
    if config.log_config:
        load_log_config(config.log_config)
    else:
        logging.config.dictConfig(default_logging_config(config.use_colors, config.log_format))
    level = TRACE if config.log_level == "trace" else logging.getLevelName(config.log_level.upper())
    for name in ("fastserve", "fastserve.error", "fastserve.access"):
        logging.getLogger(name).setLevel(level)


def load_log_config(path: str) -> None:
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            logging.config.dictConfig(json.load(f))
    elif path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise SystemExit("--log-config with YAML needs PyYAML: pip install 'fastserve[yaml]'") from None
        with open(path, encoding="utf-8") as f:
            logging.config.dictConfig(yaml.safe_load(f))
    else:
        try:
            logging.config.fileConfig(path, disable_existing_loggers=False)
        except (configparser.Error, KeyError) as exc:
            raise SystemExit(f"--log-config {path!r} is not a valid logging ini file: {exc}") from None


class AccessLog:
    """One line per response. Atoms are computed only when a line is actually written."""

    def __init__(self, fmt: str) -> None:
        self.logger = logging.getLogger("fastserve.access")
        self.fmt = fmt

    @classmethod
    def create(cls, config: Any) -> AccessLog | None:
        if not config.access_log:
            return None
        if config.log_format == "json":
            return JsonAccessLog(config.access_log_format)
        return cls(config.access_log_format)

    def log(self, conn: Any, cycle: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(self.fmt, AccessAtoms(conn, cycle, time.perf_counter()))


class JsonAccessLog(AccessLog):
    """Access lines for ``--log-format json``: the usual message plus the fields as JSON keys."""

    def log(self, conn: Any, cycle: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            atoms = AccessAtoms(conn, cycle, time.perf_counter())
            self.logger.info(self.fmt, atoms, extra={"access": access_fields(atoms)})


def access_fields(atoms: AccessAtoms) -> dict[str, Any]:
    scope, cycle = atoms.scope, atoms.cycle
    fields = {
        "client": _client(atoms),
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "status": cycle.status,
        "bytes": cycle.bytes_sent,
        "duration": round(atoms.elapsed, 6),
        "protocol": f"HTTP/{scope['http_version']}",
    }
    request_id = _header(scope["headers"], "x-request-id")
    if request_id != "-":
        fields["request_id"] = request_id
    return fields


class AccessAtoms(collections.abc.Mapping):
    """Gunicorn's access-log atoms: h l u t r m U q H s B b f a T M D L p, {name}i, {name}o, {name}e."""

    __slots__ = ("scope", "cycle", "elapsed")

    def __init__(self, conn: Any, cycle: Any, now: float) -> None:
        self.scope = cycle.scope
        self.cycle = cycle
        self.elapsed = max(0.0, now - cycle.start_time) if cycle.start_time else 0.0

    def __getitem__(self, key: str) -> Any:
        scope = self.scope
        if key.startswith("{") and len(key) > 3 and key[-2] == "}":
            name, kind = key[1:-2].lower(), key[-1]
            if kind == "i":
                return _header(scope["headers"], name)
            if kind == "o":
                return _header(self.cycle.response_headers, name)
            if kind == "e":
                return os.environ.get(name.upper(), "-")
            raise KeyError(key)
        atom = _ATOMS.get(key)
        if atom is None:
            raise KeyError(key)
        return atom(self)

    def __iter__(self):
        return iter(_ATOMS)

    def __len__(self) -> int:
        return len(_ATOMS)


def _header(headers: Any, name: str) -> str:
    wanted = name.encode("latin-1")
    for key, value in headers:
        if bytes(key).lower() == wanted:
            return bytes(value).decode("latin-1")
    return "-"


def _client(atoms: AccessAtoms) -> str:
    client = atoms.scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


def _request_line(atoms: AccessAtoms) -> str:
    scope = atoms.scope
    path = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        path += "?" + scope["query_string"].decode("latin-1")
    return f"{scope['method']} {path} HTTP/{scope['http_version']}"


_ATOMS = {
    "h": _client,
    "l": lambda a: "-",
    "u": lambda a: "-",
    "t": lambda a: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": _request_line,
    "m": lambda a: a.scope["method"],
    "U": lambda a: a.scope["path"],
    "q": lambda a: a.scope["query_string"].decode("latin-1"),
    "H": lambda a: f"HTTP/{a.scope['http_version']}",
    "s": lambda a: a.cycle.status,
    "B": lambda a: a.cycle.bytes_sent,
    "b": lambda a: a.cycle.bytes_sent or "-",
    "f": lambda a: _header(a.scope["headers"], "referer"),
    "a": lambda a: _header(a.scope["headers"], "user-agent"),
    "T": lambda a: int(a.elapsed),
    "M": lambda a: int(a.elapsed * 1000),
    "D": lambda a: int(a.elapsed * 1_000_000),
    "L": lambda a: f"{a.elapsed:.6f}",
    "p": lambda a: f"<{os.getpid()}>",
}


# -- --log-level debug and trace ------------------------------------------------------------------
# Both are decided once, when the server starts: at info and above no connection or message pays
# for them (a subclass of the protocol and a wrapper around the app are simply not used).
def debug_protocol_class(base: type) -> type:
    """``base`` (HTTPProtocol) logging connection open/close and refused bytes on 'fastserve.error'."""
    logger = logging.getLogger("fastserve.error")

    class DebugHTTPProtocol(base):
        __slots__ = ("last_data",)

        def connection_made(self, transport: Any) -> None:
            self.last_data = b""
            super().connection_made(transport)
            logger.debug("Connection opened: %s", _peer(self))

        def connection_lost(self, exc: Exception | None) -> None:
            logger.debug("Connection closed: %s%s", _peer(self), f" ({exc})" if exc else "")
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self.last_data = data
            super().data_received(data)

        def refuse(self, error: Any) -> None:
            logger.debug("Refusing %s with %d (%s); the bytes read last: %r", _peer(self), error.status,
                         error.reason, bytes(self.last_data[:200]))
            super().refuse(error)

        def switch_protocols(self, leftover: bytes) -> None:
            logger.debug("Connection %s switches to WebSocket", _peer(self))
            super().switch_protocols(leftover)

    return DebugHTTPProtocol


def _peer(conn: Any) -> str:
    client = conn.client
    return f"{client[0]}:{client[1]}" if client else "a unix socket peer"


def trace_asgi(app: Any) -> Any:
    """The app with every ASGI message logged at TRACE: type and sizes, never bodies or headers' values."""
    logger = logging.getLogger("fastserve.error")

    async def traced(scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        where = f"{kind} {scope.get('path', '')}".rstrip()

        async def traced_receive() -> dict:
            message = await receive()
            logger.log(TRACE, "ASGI [%s] receive %s", where, describe_message(message))
            return message

        async def traced_send(message: dict) -> None:
            logger.log(TRACE, "ASGI [%s] send %s", where, describe_message(message))
            await send(message)

        if kind == "lifespan":
            logger.log(TRACE, "ASGI [%s] call", where)
        else:
            logger.log(TRACE, "ASGI [%s] call (%d request headers)", where, len(scope["headers"]))
        try:
            await app(scope, traced_receive, traced_send)
        except BaseException as exc:
            logger.log(TRACE, "ASGI [%s] raised %s", where, type(exc).__name__)
            raise
        logger.log(TRACE, "ASGI [%s] returned", where)

    return traced


def describe_message(message: dict) -> str:
    parts = [str(message.get("type"))]
    for key in ("status", "code"):
        if key in message:
            parts.append(f"{key}={message[key]}")
    for key in ("body", "bytes", "text"):
        if message.get(key) is not None:
            parts.append(f"{key}={len(message[key])} {'chars' if key == 'text' else 'bytes'}")
    if "headers" in message:
        parts.append(f"headers={len(message['headers'])}")
    if "more_body" in message:
        parts.append(f"more_body={message['more_body']}")
    return " ".join(parts)
