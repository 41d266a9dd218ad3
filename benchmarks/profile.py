"""Where fastserve's time per request goes, under the hello-world load (``hello-c64``).

    python -m benchmarks.profile                 # py-spy, sampling, native frames included
    python -m benchmarks.profile --tool cprofile # deterministic: call counts per request

Starts fastserve from benchmarks/.venv pinned to --server-cpu, loads it with wrk pinned to
--load-cpu, and prints the top functions by self time (and by inclusive time for py-spy) in
µs per request, scaled by the server's CPU time per request measured in the same run. py-spy runs
on the load CPU; cProfile runs inside the server and slows it, so its µs are inflated (use its
call counts and proportions). Profiles are written to --out-dir for further digging.
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

from .peers_env import REPO_ROOT, VENV_DIR, VENV_PYTHON
from .scenarios import RAW_APP
from .servers import SERVERS, RunOptions
from .system import cpu_seconds, free_port, pinned, wait_for_port
from .wrk import WrkLoad, run_wrk


def _server_argv(python: Path, server: str, port: int, cprofile_out: Path | None) -> list[str]:
    args = SERVERS[server].argv(RAW_APP, port, RunOptions())
    if cprofile_out is not None:
        return [str(python), "-m", "cProfile", "-o", str(cprofile_out), "-m", *args]
    return [str(python), "-m", *args]


def collapsed_top(path: Path, total_us: float, limit: int) -> list[str]:
    """Self and inclusive µs/request per frame from py-spy's collapsed ("raw") output."""
    self_counts: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        samples += n
        self_counts[_short(frames[-1])] += n
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += n
    scale = total_us / samples if samples else 0.0
    lines = [f"{samples} samples; {total_us:.1f} µs of server CPU per request", "", "self time:"]
    lines += [f"  {c * scale:7.2f} µs  {c / samples:6.1%}  {f}" for f, c in self_counts.most_common(limit)]
    lines += ["", "inclusive time:"]
    lines += [f"  {c * scale:7.2f} µs  {c / samples:6.1%}  {f}" for f, c in inclusive.most_common(limit)]
    return lines


def _short(frame: str) -> str:
    return frame.replace(str(VENV_DIR / "lib"), "…").replace(str(REPO_ROOT) + "/", "")


def cprofile_top(path: Path, requests: int, limit: int) -> list[str]:
    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():
        rows.append((tottime, calls, cumtime, f"{name} ({_short(filename)}:{line})"))
    rows.sort(reverse=True)
    lines = [f"{requests} requests; per request (cProfile overhead included):",
             "   self µs    cum µs  calls/req  function"]
    for tottime, calls, cumtime, label in rows[:limit]:
        lines.append(f"  {tottime / requests * 1e6:8.2f}  {cumtime / requests * 1e6:8.2f}  "
                     f"{calls / requests:9.2f}  {label}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tool", choices=("py-spy", "cprofile"), default="py-spy", help="profiler")
    p.add_argument("--server", default="fastserve", choices=sorted(SERVERS), help="server to profile")
    p.add_argument("--duration", type=float, default=10.0, help="seconds profiled (after 2 s warm-up)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to")
    p.add_argument("--load-cpu", type=int, default=1, help="CPU wrk and py-spy are pinned to")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=30, help="functions listed")
    p.add_argument("--out-dir", type=Path, default=Path("/tmp"), help="where the raw profiles go")
    args = p.parse_args(argv)

    port = free_port()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    raw_cprofile = args.out_dir / f"{args.server}-hello.cprofile" if args.tool == "cprofile" else None
    log = open(args.out_dir / f"{args.server}-profile-server.log", "w")
    server = subprocess.Popen(pinned(args.server_cpu, _server_argv(VENV_PYTHON, args.server, port, raw_cprofile)),
                              cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    load = WrkLoad("/", args.connections)
    spy = None
    try:
        wait_for_port(port, 30, alive=lambda: server.poll() is None)
        warmup = run_wrk(load, port, 2, args.load_cpu, dict(os.environ))
        if args.tool == "py-spy":
            collapsed = args.out_dir / f"{args.server}-hello.collapsed"
            spy_argv = [str(VENV_DIR / "bin" / "py-spy"), "record", "--pid", str(server.pid), "--rate",
                        str(args.rate), "--format", "raw", "--native", "-o", str(collapsed),
                        "--duration", str(int(args.duration) + 1)]
            spy = subprocess.Popen(pinned(args.load_cpu, spy_argv), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
        cpu0 = cpu_seconds(server.pid)
        report = run_wrk(load, port, args.duration, args.load_cpu, dict(os.environ))
        cpu_us = (cpu_seconds(server.pid) - cpu0) / max(1, report["requests"]) * 1e6
        print(f"{args.server}: {report['rate']:.0f} req/s under the profiler, {cpu_us:.1f} µs CPU/request")
        if spy is not None:
            _, err = spy.communicate(timeout=args.duration + 30)
            if spy.returncode != 0:
                print(f"py-spy failed: {err.strip()[-400:]}", file=sys.stderr)
                return 1
    finally:
        server.send_signal(2)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait()
        log.close()
    if args.tool == "py-spy":
        print("\n".join(collapsed_top(collapsed, cpu_us, args.top)))
    else:
        # cProfile saw the warm-up requests too
        print("\n".join(cprofile_top(raw_cprofile, warmup["requests"] + report["requests"], args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
