"""``python -m benchmarks``: options, the setup checks, then the run and its report."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import peers_env, report
from .runner import Settings, run_matrix, snapshot_fastserve_source
from .scenarios import (
    DEFAULT_SCENARIOS,
    OPT_IN_SCENARIOS,
    QUICK_SCENARIOS,
    SCENARIOS,
    parse_scenario_list,
)
from .servers import DEFAULT_SERVERS, SERVERS, parse_server_list
from .system import loadavg, machine_description, raise_fd_limit, require_tools, wrk_version

BENCH_DIR = Path(__file__).resolve().parent
VERSIONED = ["fastserve", "uvicorn", "granian", "hypercorn", "gunicorn", "daphne", "uvloop", "httptools", "h11",
             "websockets", "starlette", "django"]

DESCRIPTION = """\
Benchmark fastserve against uvicorn, granian, hypercorn, gunicorn (-k asgi) and daphne on the same apps.

Each run starts a fresh server (one worker) pinned to one CPU with taskset, warms it up, then
measures with wrk (HTTP) or benchmarks.loadgen (WebSocket, idle memory) pinned to another CPU.
Servers run interleaved (A B C A B C ...) for --repeat repetitions; tables show medians. CPU used
by other processes during a run is measured from /proc; a run where it exceeds --max-other-cpu is
discarded and redone (at most --retries times, then the least disturbed is kept and flagged).
The peers are installed into benchmarks/.venv on first use (with fastserve, editable).

scenarios (* = not in the default set: ask for them with --scenarios, or 'all'):
""" + "\n".join(f"  {s.name + (' *' if s.name in OPT_IN_SCENARIOS else ''):<15} {s.title}"
               for s in SCENARIOS.values()) + """

  close-c16   like close, at 16 connections.
  ws-deflate  the client offers permessage-deflate as Chromium does (client_max_window_bits,
              no *_no_context_takeover) and cycles through a seeded mix of JSON text messages
              (85 % 50-500 B, 13 % 2-16 KiB, 2 % 64 KiB); reports msg/s and payload MB/s. Peers use
              their default WebSocket implementation, uvicorn --ws websockets-sansio if it has it.
  workers2    fastserve, uvicorn and granian with --workers 2; server and wrk share both cores
              (no pinning), so compare it only with itself. A 1 s probe after each run counts the
              responses per worker pid (the spread of connections across workers).

servers:
""" + "\n".join(f"  {s.name:<15} {s.description}" for s in SERVERS.values())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                   help="comma-separated servers to run, or 'all' (default: %(default)s)")
    p.add_argument("--scenarios", default=None,
                   help="comma-separated scenarios, or 'all' (default: every scenario not marked * "
                        "below; with --quick: " + ",".join(QUICK_SCENARIOS) + ")")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds measured per run (default 10; with --quick 1)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds of the same load before each measured run (default 3; --quick 1)")
    p.add_argument("--repeat", type=int, default=None,
                   help="interleaved repetitions per server and scenario (default 3; --quick 1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 s runs, 1 s warm-up, 1 repetition, no retries, fewer scenarios")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (default 0)")
    p.add_argument("--load-cpu", type=int, default=1,
                   help="CPU wrk and the load generator are pinned to (default 1)")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset (not comparable numbers)")
    p.add_argument("--max-other-cpu", type=float, default=0.10,
                   help="discard a run if other processes used more than this many cores on average "
                        "during it (default %(default)s)")
    p.add_argument("--retries", type=int, default=None,
                   help="redos of a disturbed run before keeping the least disturbed (default 3; --quick 0)")
    p.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md",
                   help="Markdown report (default benchmarks/RESULTS.md); results.json goes next to it")
    p.add_argument("--chart", type=Path, default=None,
                   help="PNG bar chart (default: results.png next to --output)")
    p.add_argument("--no-chart", action="store_true", help="skip the matplotlib chart")
    p.add_argument("--note", default="",
                   help="a sentence about the conditions, written into the report")
    p.add_argument("--skip-install", action="store_true",
                   help="use benchmarks/.venv as it is, even if it looks out of date")
    p.add_argument("--from-json", type=Path, default=None, metavar="RESULTS_JSON",
                   help="measure nothing: rewrite the report and chart from an earlier results.json")
    p.add_argument("--live-source", action="store_true",
                   help="run fastserve from the live src/ tree instead of a snapshot copied when the "
                        "run starts (the snapshot keeps edits made during a long run out of it)")
    p.add_argument("--pure", action="store_true",
                   help="run fastserve's hot path as Python (by default the snapshot is compiled as a "
                        "wheel builds it: setup.py, mypyc; the live tree is never compiled)")
    p.add_argument("--server-python", type=Path, default=None,
                   help="run the servers with this interpreter instead of benchmarks/.venv's, and "
                        "install nothing (it must have the selected servers; the test suite uses "
                        "this with fastserve only)")
    return p


def settings_from(args: argparse.Namespace, bench_python: Path) -> Settings:
    quick = args.quick
    scenarios_text = args.scenarios or ",".join(QUICK_SCENARIOS if quick else DEFAULT_SCENARIOS)

    def pick(value, normal, fast):
        return value if value is not None else (fast if quick else normal)

    return Settings(
        servers=parse_server_list(args.servers),
        scenarios=[SCENARIOS[n] for n in parse_scenario_list(scenarios_text)],
        duration=pick(args.duration, 10.0, 1.0),
        warmup=pick(args.warmup, 3.0, 1.0),
        repeat=pick(args.repeat, 3, 1),
        server_cpu=None if args.no_pin else args.server_cpu,
        load_cpu=None if args.no_pin else args.load_cpu,
        max_other_cpu=args.max_other_cpu,
        retries=pick(args.retries, 3, 0),
        bench_python=bench_python,
        say=lambda text: print(text, flush=True),
    )


def fastserve_source_state() -> str:
    """The commit fastserve was measured at, and whether src/ had uncommitted edits."""
    root = peers_env.REPO_ROOT

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines() if line]
    if not dirty:
        return f"commit {commit}, src/ clean"
    files = ", ".join(dirty)
    return f"commit {commit} plus uncommitted edits in {files}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_json is not None:
        return rewrite_report(args)
    missing = require_tools()
    if missing:
        print(f"missing tools: {', '.join(missing)} (apt-get install wrk util-linux)", file=sys.stderr)
        return 2
    if args.server_python is not None:
        bench_python = args.server_python
    elif args.skip_install:
        bench_python = peers_env.VENV_PYTHON
    else:
        bench_python = peers_env.ensure_venv()
    try:
        settings = settings_from(args, bench_python)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    raise_fd_limit()
    source_state = fastserve_source_state()
    if args.live_source:
        source_state += ", pure Python (the live tree)"
    else:
        kind = snapshot_fastserve_source(settings, pure=args.pure)
        source_state += f" (snapshot of src/ taken at the start of the run), {kind}"
    started_load = loadavg()
    started = time.monotonic()
    settings.say(f"logs of every server run: {settings.log_dir}")
    chart = None if args.no_chart else (args.chart or args.output.with_name("results.png"))
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))

    def write(results: dict, with_chart: bool) -> None:
        results["meta"] = run_metadata(args, settings, bench_python, command, source_state,
                                       started_load, started, results)
        report.write_outputs(results, args.output, args.output.with_name("results.json"),
                             chart if with_chart else None, bench_python, say=settings.say)

    signal.signal(signal.SIGTERM, _terminate)
    try:
        results = run_matrix(settings, on_scenario_done=lambda partial: write(partial, False))
    except KeyboardInterrupt:
        settings.say("interrupted: the report holds the scenarios completed so far")
        return 130
    write(results, True)
    settings.say(f"wrote {args.output}")
    return 0


def rewrite_report(args: argparse.Namespace) -> int:
    results = json.loads(args.from_json.read_text())
    chart = None if args.no_chart else (args.chart or args.output.with_name("results.png"))
    python = args.server_python or peers_env.VENV_PYTHON
    report.write_outputs(results, args.output, args.output.with_name("results.json"), chart, python)
    print(f"wrote {args.output} from {args.from_json}")
    return 0


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # unwinds through the runner, which stops its server and load


def run_metadata(args, settings: Settings, bench_python: Path, command: str, source_state: str,
                 started_load: str, started: float, results: dict) -> dict:
    measured = sorted({r["scenario"] for r in results["runs"]}, key=[s.name for s in settings.scenarios].index)
    return {
        "command": command,
        "complete": results.get("complete", False),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed_seconds": round(time.monotonic() - started),
        "machine": machine_description(),
        "wrk": wrk_version(),
        "versions": peers_env.installed_versions(bench_python, VERSIONED),
        "fastserve_source": source_state,
        "servers": settings.servers,
        "scenarios": measured,
        "duration": settings.duration,
        "warmup": settings.warmup,
        "repeat": settings.repeat,
        "server_cpu": settings.server_cpu,
        "load_cpu": settings.load_cpu,
        "max_other_cpu": settings.max_other_cpu,
        "loadavg_start": started_load,
        "loadavg_end": loadavg(),
        "conditions_note": args.note,
    }
