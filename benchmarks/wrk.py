"""Running wrk and reading its report (rate, latency percentiles, errors)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .system import pinned

LUA_DIR = Path(__file__).resolve().parent / "lua"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}  # to milliseconds
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(\w+)")
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WORKER_PID = re.compile(r"^worker-pid (\S+) (\d+)$", re.MULTILINE)  # printed by lua/worker_pids.lua


@dataclass
class WrkLoad:
    """What wrk sends: path, connections, optional Lua script, extra headers, environment."""

    path: str = "/"
    connections: int = 64
    script: str | None = None  # a file in benchmarks/lua
    headers: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    latency: bool = True  # False for pipelined scripts: wrk's per-request latency is meaningless


def wrk_command(load: WrkLoad, port: int, seconds: float, cpu: int | None) -> list[str]:
    argv = [
        "wrk", "-t1", f"-c{load.connections}", f"-d{max(1, round(seconds))}s", "--latency",
        "--timeout", "10s",
    ]
    for header in load.headers:
        argv += ["-H", header]
    if load.script:
        argv += ["-s", str(LUA_DIR / load.script)]
    argv.append(f"http://127.0.0.1:{port}{load.path}")
    return pinned(cpu, argv)


def run_wrk(load: WrkLoad, port: int, seconds: float, cpu: int | None, env: dict) -> dict:
    """One wrk run; returns the parsed report. Bounded by wrk's own -d plus a margin."""
    argv = wrk_command(load, port, seconds, cpu)
    done = subprocess.run(
        argv, capture_output=True, text=True, env={**env, **load.env}, timeout=seconds + 30
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    report = parse_wrk(done.stdout)
    if not load.latency:
        report["p50_ms"] = report["p99_ms"] = None
    report["command"] = " ".join(argv)
    return report


def parse_wrk(text: str) -> dict:
    rate = _RATE.search(text)
    if rate is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{text}")
    latency = {f"p{p}": float(v) * _UNITS[u] for p, v, u in _PERCENTILE.findall(text)}
    if not latency.get("p99"):
        latency = {}  # wrk has no per-request latency with pipelined scripts: it prints zeros
    errors = _SOCKET_ERRORS.search(text)
    non_2xx = _NON_2XX.search(text)
    total = _TOTAL.search(text)
    workers = {pid: int(count) for pid, count in _WORKER_PID.findall(text)}
    return {
        **({"worker_responses": workers} if workers else {}),
        "rate": float(rate.group(1)),
        "requests": int(total.group(1)) if total else 0,
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
        if errors
        else {},
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }
