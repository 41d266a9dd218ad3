"""The servers under test and how each is started: one worker, HTTP/1.1, no access log.

A scenario may ask for more workers (``workers2``) or for uvicorn's sans-I/O WebSocket
implementation (``ws-deflate``); ``RunOptions`` carries that, and each server reads what applies.

Every server runs as ``<bench venv python> -m <server> ...`` from the repository root, so all of
them import the same app files from benchmarks/apps. Where a server lets us choose, it uses uvloop
(the h11 variants too: only the parser differs). Keep-alive timeouts are raised to 120 s so that
idle connections survive the memory scenarios.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

KEEP_ALIVE_SECONDS = 120


@dataclass(frozen=True)
class RunOptions:
    workers: int = 1
    uvicorn_ws: str | None = None  # uvicorn's --ws implementation; None: its default


@dataclass(frozen=True)
class Server:
    name: str
    description: str
    argv: Callable[[str, int, RunOptions], list[str]]  # (app "module:attr", port, options) -> after "python -m"
    family: str  # servers compared for the targets: fastserve vs uvicorn within a family
    websockets: bool = True


def _fastserve(http: str, *extra: str) -> Callable[[str, int, RunOptions], list[str]]:
    def argv(app: str, port: int, options: RunOptions) -> list[str]:
        return [
            "fastserve", app, "--host", "127.0.0.1", "--port", str(port), "--http", http,
            "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
            "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS), "--workers", str(options.workers), *extra,
        ]
    return argv


def _uvicorn(http: str) -> Callable[[str, int, RunOptions], list[str]]:
    def argv(app: str, port: int, options: RunOptions) -> list[str]:
        ws = ["--ws", options.uvicorn_ws] if options.uvicorn_ws else []
        return [
            "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--http", http,
            "--loop", "uvloop", "--no-access-log", "--log-level", "warning", *ws,
            "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS), "--workers", str(options.workers),
        ]
    return argv


def _granian(app: str, port: int, options: RunOptions) -> list[str]:
    return [
        "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
        "--http", "1", "--workers", str(options.workers), "--runtime-threads", "1", "--loop", "uvloop",
        "--no-access-log", "--log-level", "warning", app,
    ]


def _hypercorn(app: str, port: int, options: RunOptions) -> list[str]:
    return [
        "hypercorn", app, "--bind", f"127.0.0.1:{port}", "--workers", str(options.workers),
        "--worker-class", "uvloop", "--keep-alive", str(KEEP_ALIVE_SECONDS), "--log-level", "warning",
    ]


def _gunicorn(app: str, port: int, options: RunOptions) -> list[str]:
    """gunicorn's own ASGI worker (gunicorn >= 25: ``-k asgi``), its own HTTP/1.1 parser."""
    return [
        "gunicorn", "-k", "asgi", "--asgi-loop", "uvloop", "--workers", str(options.workers),
        "--bind", f"127.0.0.1:{port}", "--keep-alive", str(KEEP_ALIVE_SECONDS), "--log-level", "warning", app,
    ]


def _daphne(app: str, port: int, options: RunOptions) -> list[str]:
    return ["daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", app]  # one process, always


SERVERS: dict[str, Server] = {
    s.name: s
    for s in (
        Server("fastserve", "fastserve --http httptools --loop uvloop", _fastserve("httptools"), "httptools"),
        Server("uvicorn", "uvicorn --http httptools --loop uvloop", _uvicorn("httptools"), "httptools"),
        Server("granian", "granian --interface asgi, 1 worker, 1 runtime thread, uvloop", _granian, "granian"),
        Server("hypercorn", "hypercorn -k uvloop (h11)", _hypercorn, "other"),
        Server("gunicorn", "gunicorn -k asgi (its own ASGI worker), uvloop", _gunicorn, "other"),
        Server("daphne", "daphne (Twisted)", _daphne, "other"),
        Server("fastserve-h11", "fastserve --http h11 --loop uvloop", _fastserve("h11"), "h11"),
        # A socket per worker (SO_REUSEPORT); the same as fastserve with one worker.
        Server("fastserve-reuseport", "fastserve --reuse-port (a socket per worker)",
               _fastserve("httptools", "--reuse-port"), "httptools"),
        Server("uvicorn-h11", "uvicorn --http h11 --loop uvloop", _uvicorn("h11"), "h11"),
    )
}
DEFAULT_SERVERS = ("fastserve", "uvicorn", "granian", "hypercorn", "gunicorn", "daphne", "fastserve-h11", "uvicorn-h11")
# The baseline each server is compared with in the "vs uvicorn" column (same parser family).
UVICORN_BASELINE = {"fastserve-h11": "uvicorn-h11", "uvicorn-h11": "uvicorn-h11"}


def uvicorn_baseline(server: str) -> str:
    return UVICORN_BASELINE.get(server, "uvicorn")


def parse_server_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(DEFAULT_SERVERS)
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        raise ValueError(f"unknown server(s): {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    return names
