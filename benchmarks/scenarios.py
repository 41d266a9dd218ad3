"""What is measured: each scenario names an app, a kind of load and how its result reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from .wrk import WrkLoad

RAW_APP = "benchmarks.apps.raw:app"
STARLETTE_APP = "benchmarks.apps.starlette_app:app"
DJANGO_APP = "benchmarks.apps.django_site.asgi:application"
ECHO_BODY_BYTES = 1024 * 1024
PIPELINE_DEPTH = 16
IDLE_CONNECTIONS = 1000
WS_CLIENTS = 32
WORKERS = 2
# The fields Chromium 131 sends with a navigation to a site it holds a session cookie for, but
# Host (wrk sends it): what each request of a real page brings, where wrk's own GET has Host only.
BROWSER_HEADERS = (
    "Connection: keep-alive",
    'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"',
    "sec-ch-ua-mobile: ?0",
    'sec-ch-ua-platform: "Linux"',
    "Upgrade-Insecure-Requests: 1",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8",
    "Sec-Fetch-Site: same-origin",
    "Sec-Fetch-Mode: navigate",
    "Sec-Fetch-User: ?1",
    "Sec-Fetch-Dest: document",
    "Referer: http://127.0.0.1:8000/",
    "Accept-Encoding: gzip, deflate, br, zstd",
    "Accept-Language: en-US,en;q=0.9",
    "Cookie: sessionid=abcdef0123456789; csrftoken=0123456789abcdef0123456789abcdef",
)
# The servers that take a --workers count and are compared in the workers2 scenario.
MULTI_WORKER_SERVERS = ("fastserve", "fastserve-reuseport", "uvicorn", "granian")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    app: str
    kind: str  # "wrk" (HTTP load), "ws" (loadgen messages/s) or "idle" (RSS per connection)
    unit: str
    wrk: WrkLoad | None = None
    loadgen_mode: str = ""
    loadgen_args: tuple[str, ...] = field(default=())
    workers: int = 1
    # False: server and load generator share every core (no taskset); said so in the title.
    pinned: bool = True
    only_servers: tuple[str, ...] = ()  # when set, the other selected servers skip this scenario
    uvicorn_ws_sansio: bool = False  # uvicorn --ws websockets-sansio, if the installed uvicorn has it
    # A short extra wrk run after the measured one, not counted in the rate, whose Lua script
    # counts the responses per worker pid (the accept distribution across workers).
    worker_probe: WrkLoad | None = None

    def runs_on(self, server: str) -> bool:
        return not self.only_servers or server in self.only_servers


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("hello-c64", "hello world, keep-alive, 64 connections", RAW_APP, "wrk", "req/s",
                 WrkLoad("/", 64)),
        Scenario("browser-c64", "hello world, keep-alive, 64 connections, each GET with a browser's 16 fields",
                 RAW_APP, "wrk", "req/s", WrkLoad("/", 64, headers=BROWSER_HEADERS)),
        Scenario("hello-c256", "hello world, keep-alive, 256 connections", RAW_APP, "wrk", "req/s",
                 WrkLoad("/", 256)),
        Scenario("64k", "64 KiB response, 64 connections", RAW_APP, "wrk", "req/s", WrkLoad("/64k", 64)),
        Scenario("echo-1m", "1 MiB POST echoed back, streamed both ways, 16 connections", RAW_APP, "wrk",
                 "req/s", WrkLoad("/echo", 16, "post_body.lua", env={"POST_BODY_BYTES": str(ECHO_BODY_BYTES)})),
        Scenario("close", "hello world, Connection: close (new connection per request), 64 conns",
                 RAW_APP, "wrk", "req/s", WrkLoad("/", 64, headers=("Connection: close",))),
        Scenario("close-c16", "hello world, Connection: close (new connection per request), 16 conns",
                 RAW_APP, "wrk", "req/s", WrkLoad("/", 16, headers=("Connection: close",))),
        Scenario("pipeline16", f"hello world, pipelined depth {PIPELINE_DEPTH}, 64 connections", RAW_APP,
                 "wrk", "req/s", WrkLoad("/", 64, "pipeline.lua", env={"PIPELINE_DEPTH": str(PIPELINE_DEPTH)},
                         latency=False)),
        Scenario("starlette-json", "Starlette JSONResponse endpoint, 64 connections", STARLETTE_APP,
                 "wrk", "req/s", WrkLoad("/json", 64)),
        Scenario("django", "Django async view returning JsonResponse (ASGI handler), 64 connections", DJANGO_APP, "wrk",
                 "req/s", WrkLoad("/django/", 64)),
        Scenario("ws-echo", f"WebSocket echo, {WS_CLIENTS} clients, 1 message in flight each", RAW_APP,
                 "ws", "msg/s", loadgen_mode="ws-echo", loadgen_args=("--clients", str(WS_CLIENTS))),
        Scenario("ws-deflate", f"WebSocket echo with permessage-deflate, browser-like message mix, "
                 f"{WS_CLIENTS} clients", RAW_APP, "ws", "msg/s", loadgen_mode="ws-deflate",
                 loadgen_args=("--clients", str(WS_CLIENTS)), uvicorn_ws_sansio=True),
        Scenario("ws-broadcast", f"WebSocket broadcast to {WS_CLIENTS} clients, 1 sender", RAW_APP,
                 "ws", "deliveries/s", loadgen_mode="ws-broadcast",
                 loadgen_args=("--clients", str(WS_CLIENTS))),
        Scenario("idle-http", f"RSS per {IDLE_CONNECTIONS} idle keep-alive connections", RAW_APP, "idle",
                 "KiB/1000", loadgen_mode="idle-http", loadgen_args=("--count", str(IDLE_CONNECTIONS))),
        Scenario("idle-ws", f"RSS per {IDLE_CONNECTIONS} idle WebSockets", RAW_APP, "idle", "KiB/1000",
                 loadgen_mode="idle-ws", loadgen_args=("--count", str(IDLE_CONNECTIONS))),
        Scenario("workers2", f"hello world, keep-alive, 64 connections, --workers {WORKERS}; NOT PINNED: "
                 f"server and wrk share both cores", RAW_APP, "wrk", "req/s", WrkLoad("/", 64),
                 workers=WORKERS, pinned=False, only_servers=MULTI_WORKER_SERVERS,
                 worker_probe=WrkLoad("/pid", 64, "worker_pids.lua", latency=False)),
        Scenario("file-1m", "Starlette FileResponse of a 1 MiB file (pathsend where offered), 16 connections",
                 STARLETTE_APP, "wrk", "req/s", WrkLoad("/file/1m", 16)),
        Scenario("file-10m", "Starlette FileResponse of a 10 MiB file (pathsend where offered), 4 connections",
                 STARLETTE_APP, "wrk", "req/s", WrkLoad("/file/10m", 4)),
    )
}
# Added in "Performance, round two"; measured on request (or with "all") so that the default
# matrix, and the report it makes, stay comparable with earlier runs.
OPT_IN_SCENARIOS = ("close-c16", "browser-c64", "ws-deflate", "workers2", "file-1m", "file-10m")
DEFAULT_SCENARIOS = tuple(name for name in SCENARIOS if name not in OPT_IN_SCENARIOS)
QUICK_SCENARIOS = ("hello-c64", "64k", "echo-1m", "close", "pipeline16", "ws-echo", "idle-http")


def parse_scenario_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return names
