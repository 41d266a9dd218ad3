"""HTTP/2 hello world under h2load: fastserve (zttp and h2 codecs) against the peers, over h2c.

    python -m benchmarks.h2load                      # 3 interleaved rounds, 20,000 requests each
    python -m benchmarks.h2load --rounds 5 --requests 50000 --servers fastserve,granian
    python -m benchmarks.h2load --servers fastserve-base,fastserve,granian,uvicorn --base 74ec09c
    python -m benchmarks.h2load --tls --app starlette-json   # https with ALPN; Starlette's JSONResponse

Each server runs from the benchmark venv (benchmarks/peers_env.py; created on first use) with one
worker and the plain ASGI app (benchmarks/apps/raw.py, GET / -> 13 bytes; `--app starlette-json`:
Starlette's GET /json), access logs off, pinned to CPU 0 with h2load on CPU 1. The client is h2load
(apt package nghttp2-client) with cleartext prior knowledge (`--tls`: https, ALPN h2), `-c 64 -m 10` by
default (64 connections, 10 streams in flight on each), as the HTTP/2 issue asks. Rounds are
interleaved (every server once per round, in turn) so that load from elsewhere on the machine
spreads over all of them; the figure is the median of the rounds' req/s, with every round shown.
`fastserve` and `fastserve-h2` run this checkout's src/ (first on PYTHONPATH: the venv's editable
install may point at another checkout); `fastserve-base` is fastserve (zttp) as it was at the commit
`--base` names (its src/ exported to a temporary folder, likewise), to measure a change before and
after in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .compiled import fastserve_envs
from .peers_env import BENCH_DIR, ensure_venv
from .system import pinned, raise_fd_limit, stop_process

# What each app serves, and the path h2load asks for.
APPS = {
    "hello": ("benchmarks.apps.raw:app", "/"),  # the plain ASGI hello world: 13 bytes
    "starlette-json": ("benchmarks.apps.starlette_app:app", "/json"),  # routing + JSONResponse
}


def _server_argv(name: str, bin_dir: Path, port: int, app: str, tls: tuple[str, str] | None) -> list[str]:
    python = str(bin_dir / "python")
    cert, key = tls or ("", "")
    fastserve = [python, "-m", "fastserve", app, "--port", str(port), "--no-access-log", "--log-level", "warning",
                 *(["--ssl-certfile", cert, "--ssl-keyfile", key] if tls else [])]
    gunicorn_h2 = ["--certfile", cert, "--keyfile", key] if tls else ["--http2-cleartext", "prior-knowledge"]
    commands = {
        "fastserve": [*fastserve, "--http2-codec", "zttp"],
        "fastserve-base": [*fastserve, "--http2-codec", "zttp"],  # run from --base (compiled.fastserve_envs)
        "fastserve-h2": [*fastserve, "--http2-codec", "h2"],
        "granian": [str(bin_dir / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop", "--http", "2",
                    "--no-access-log", "--log-level", "warning",
                    *(["--ssl-certificate", cert, "--ssl-keyfile", key] if tls else []), app],
        "hypercorn": [str(bin_dir / "hypercorn"), app, "--bind", f"127.0.0.1:{port}", "--workers", "1",
                      "-k", "uvloop", "--log-level", "warning",
                      *(["--certfile", cert, "--keyfile", key] if tls else [])],
        # gunicorn's own ASGI worker (gunicorn >= 26.2 for h2c), HTTP/2 on the h2 library
        "gunicorn": [str(bin_dir / "gunicorn"), "-k", "asgi", "--asgi-loop", "uvloop", "--workers", "1",
                     "--bind", f"127.0.0.1:{port}", "--http-protocols", "h2,h1", *gunicorn_h2,
                     "--log-level", "warning", app],
        "uvicorn": [str(bin_dir / "uvicorn"), app, "--port", str(port), "--http", "zttp", "--http2",
                    "--no-access-log", "--log-level", "warning",
                    *(["--ssl-certfile", cert, "--ssl-keyfile", key] if tls else [])],
    }
    return commands[name]


def make_certificate(folder: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (h2load does not verify it); ALPN picks h2."""
    cert, key = str(Path(folder) / "cert.pem"), str(Path(folder) / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not listen in time")


def add_run_arguments(parser: argparse.ArgumentParser, base_default: str = "HEAD") -> None:
    """The options of the scripts that start each server themselves (h2idle, cpusplit): where
    server and load run, the revision fastserve-base runs, and the interpreter."""
    parser.add_argument("--server-cpu", type=int, default=0, help="the CPU the server is pinned to")
    parser.add_argument("--load-cpu", type=int, default=1, help="the CPU the load is pinned to")
    parser.add_argument("--no-pin", action="store_true", help="pin neither")
    parser.add_argument("--base", default=base_default, help="the git revision fastserve-base runs")
    parser.add_argument("--pure", action="store_true", help="run fastserve's hot path as Python, not compiled "
                        "as a wheel builds it (benchmarks/compiled.py)")
    parser.add_argument("--server-python", help="run the servers with this interpreter instead of the benchmark "
                        "venv's (no peers installed: fastserve servers only; the smoke tests use it)")


def prepare_run(args: argparse.Namespace) -> None:
    """After add_run_arguments(): raise the open-file limit, pin this process to the load CPU,
    and set ``args.bin_dir``, where the servers' interpreter and scripts are."""
    raise_fd_limit()
    if args.no_pin:
        args.server_cpu = args.load_cpu = None
    if args.load_cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.load_cpu})
    args.bin_dir = Path(args.server_python).parent if args.server_python else ensure_venv().parent


def run_once(name: str, bin_dir: Path, h2load: str, args: argparse.Namespace,
             env: dict[str, str] | None = None) -> tuple[float, str]:
    """(req/s, h2load's status line) for one server, started fresh; server and h2load each pinned."""
    port = _free_port()
    app, path = APPS[args.app]
    url = f"{'https' if args.tls else 'http'}://127.0.0.1:{port}{path}"
    proc = subprocess.Popen(pinned(args.server_cpu, _server_argv(name, bin_dir, port, app, args.tls)),
                            cwd=BENCH_DIR.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(port, proc)
        subprocess.run(pinned(args.load_cpu, [h2load, "-n", "2000", "-c", "8", "-m", "10", url]),
                       capture_output=True, timeout=60)  # warm-up
        result = subprocess.run(
            pinned(args.load_cpu, [h2load, "-n", str(args.requests), "-c", str(args.clients),
                                   "-m", str(args.streams), url]),
            capture_output=True, timeout=300, text=True,
        )
    finally:
        stop_process(proc)
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", result.stdout)
    status = next((line.strip() for line in result.stdout.splitlines() if line.startswith("requests:")), "?")
    return (float(rate.group(1)) if rate else 0.0), status


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="fastserve,fastserve-h2,granian,hypercorn,gunicorn,uvicorn")
    parser.add_argument("--app", choices=sorted(APPS), default="hello")
    parser.add_argument("--tls", action="store_true", help="https with ALPN h2 (a self-signed certificate)")
    parser.add_argument("--server-cpu", type=int, default=0, help="the CPU the server is pinned to")
    parser.add_argument("--load-cpu", type=int, default=1, help="the CPU h2load is pinned to")
    parser.add_argument("--no-pin", action="store_true", help="pin neither")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--base", default="HEAD", help="the git revision fastserve-base runs")
    parser.add_argument("--pure", action="store_true", help="run fastserve's hot path as Python, not compiled")
    args = parser.parse_args(argv)
    h2load = shutil.which("h2load")
    if h2load is None:
        sys.exit("h2load is not installed: apt-get install nghttp2-client (make system-deps)")
    bin_dir = ensure_venv().parent
    servers = args.servers.split(",")
    results: dict[str, list[float]] = {name: [] for name in servers}
    folder = tempfile.TemporaryDirectory()
    if args.no_pin:
        args.server_cpu = args.load_cpu = None
    args.tls = make_certificate(folder.name) if args.tls else None
    envs = fastserve_envs([name for name in servers if name.startswith("fastserve")], args.base,
                          bin_dir / "python", args.pure, Path(folder.name))
    for round_number in range(args.rounds):
        for name in servers:
            try:
                rate, status = run_once(name, bin_dir, h2load, args, envs.get(name))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                rate, status = 0.0, f"failed: {exc}"[:200]
            results[name].append(rate)
            print(f"round {round_number + 1} {name:13} {rate:10.0f} req/s   {status}", flush=True)
    base = f" (fastserve-base: {args.base})" if "fastserve-base" in envs else ""
    how = "TLS with ALPN" if args.tls else "h2c prior knowledge"
    print(f"\nh2load -n {args.requests} -c {args.clients} -m {args.streams}, {args.app}, {how}, median of {args.rounds}{base}:")
    for name, rates in results.items():
        print(f"  {name:13} {statistics.median(rates):10.0f} req/s   rounds: {', '.join(f'{r:.0f}' for r in rates)}")


if __name__ == "__main__":
    main()
