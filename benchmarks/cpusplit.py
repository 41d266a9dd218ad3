"""User and system CPU per request of servers under one wrk load, interleaved: an A/B of a change.

    python -m benchmarks.cpusplit --scenario close --base 2c49e9f     # fastserve at HEAD's src vs 2c49e9f's
    python -m benchmarks.cpusplit --servers fastserve,granian --rounds 5

Each round starts every server fresh (the argv of benchmarks/servers.py, from the benchmark venv),
pinned to --server-cpu, warms it with wrk for 2 s, then runs wrk (pinned to --load-cpu) for
--duration seconds and reads the server's user and system CPU time from /proc (its whole process
tree). Printed per run: req/s, µs of user and of system CPU per request, and how busy the server
was (CPU seconds per second: under 1 means it waited, not that it was cheaper). The benchmark tool
(``python -m benchmarks``) gives only the sum; the split shows whether a change saved Python work
or kernel work. ``fastserve-base`` runs the src/ of git revision --base (exported to a temporary
folder), so a change and its parent are measured in the same minutes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from .compiled import fastserve_envs
from .h2load import add_run_arguments, prepare_run
from .peers_env import BENCH_DIR
from .scenarios import SCENARIOS
from .servers import SERVERS, RunOptions
from .system import (
    CLOCK_TICKS,
    free_port,
    pinned,
    process_tree,
    stop_process,
    wait_for_port,
)
from .wrk import run_wrk

WARMUP_SECONDS = 2


def user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` and its descendants."""
    user = system = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def run_once(name: str, scenario: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    load = SCENARIOS[scenario].wrk
    assert load is not None, f"{scenario} is not a wrk scenario"
    port = free_port()
    server = SERVERS["fastserve" if name == "fastserve-base" else name]
    argv = [str(args.bin_dir / "python"), "-m", *server.argv(SCENARIOS[scenario].app, port, RunOptions())]
    proc = subprocess.Popen(pinned(args.server_cpu, argv), cwd=BENCH_DIR.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, 30, lambda: proc.poll() is None)
        run_wrk(load, port, WARMUP_SECONDS, args.load_cpu, env)
        user0, system0 = user_system_seconds(proc.pid)
        started = time.monotonic()
        report = run_wrk(load, port, args.duration, args.load_cpu, env)
        elapsed = time.monotonic() - started
        user1, system1 = user_system_seconds(proc.pid)
    finally:
        stop_process(proc)
    requests = report["rate"] * elapsed
    return {
        "rate": report["rate"],
        "user_us": (user1 - user0) / requests * 1e6,
        "system_us": (system1 - system0) / requests * 1e6,
        "busy": (user1 - user0 + system1 - system0) / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpusplit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="fastserve-base,fastserve",
                        help="comma-separated: names from benchmarks/servers.py, and fastserve-base")
    parser.add_argument("--scenario", default="close", help="a wrk scenario of benchmarks/scenarios.py")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    add_run_arguments(parser, base_default="HEAD~1")
    args = parser.parse_args(argv)
    prepare_run(args)
    servers = args.servers.split(",")
    unknown = [name for name in servers if name != "fastserve-base" and name not in SERVERS]
    if unknown:
        parser.error(f"unknown server(s): {', '.join(unknown)}")
    folder = tempfile.TemporaryDirectory()
    envs = fastserve_envs(servers, args.base, args.bin_dir / "python", args.pure, Path(folder.name))
    results: dict[str, list[dict]] = {name: [] for name in servers}
    for round_number in range(args.rounds):
        for name in servers:
            result = run_once(name, args.scenario, args, envs[name])
            results[name].append(result)
            print(f"round {round_number + 1} {name:15} {result['rate']:9,.0f} req/s  user {result['user_us']:6.1f} µs"
                  f"  system {result['system_us']:6.1f} µs  total {result['user_us'] + result['system_us']:6.1f} µs"
                  f"  busy {result['busy']:.2f}", flush=True)
    print(f"\n{args.scenario}, median of {args.rounds} (µs of server CPU per request):")
    for name, runs in results.items():
        median = {key: statistics.median(run[key] for run in runs) for key in ("rate", "user_us", "system_us")}
        print(f"  {name:15} {median['rate']:9,.0f} req/s  user {median['user_us']:6.1f}  system "
              f"{median['system_us']:6.1f}  total {median['user_us'] + median['system_us']:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
