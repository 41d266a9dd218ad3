"""Running the matrix: interleaved repetitions, one fresh server per run, disturbed runs redone."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .compiled import build, copy_checkout
from .peers_env import REPO_ROOT
from .scenarios import Scenario
from .servers import SERVERS, RunOptions
from .system import LoadWatch, free_port, pinned, tree_cpu_seconds, tree_rss_kib, wait_for_port
from .wrk import run_wrk


@dataclass
class Settings:
    servers: list[str]
    scenarios: list[Scenario]
    duration: float
    warmup: float
    repeat: int
    server_cpu: int | None
    load_cpu: int | None
    max_other_cpu: float  # cores of CPU used by others during a run before it is discarded
    retries: int  # redos of a disturbed run before keeping the least disturbed one
    bench_python: Path
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fastserve-bench-")))
    say: object = print
    # A copy of src/ taken when the run starts, imported ahead of the editable install, so every
    # run measures the same fastserve even while others edit the tree. None: the live tree.
    fastserve_src: Path | None = None


def snapshot_fastserve_source(settings: Settings, pure: bool = False) -> str:
    """Copy src/ (and the build files) into the run's log directory, compile its hot path as a
    wheel would (unless ``pure``), and use that copy for every server; returns the build kind."""
    tree = copy_checkout(settings.log_dir / "fastserve-tree")
    kind = "pure Python" if pure else build(tree, settings.bench_python)
    settings.fastserve_src = tree / "src"
    return kind


class RunningServer:
    """One server process in its own session, pinned, with its output in a log file."""

    def __init__(self, name: str, app: str, settings: Settings, tag: str,
                 options: RunOptions, cpu: int | None) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = settings.log_dir / f"{tag}-{name}.log"
        argv = [str(settings.bench_python), "-m", *SERVERS[name].argv(app, self.port, options)]
        self.command = " ".join(pinned(cpu, argv))
        paths = [str(settings.fastserve_src)] if settings.fastserve_src else []
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([*paths, str(REPO_ROOT)])}
        env.pop("VIRTUAL_ENV", None)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            pinned(cpu, argv), cwd=REPO_ROOT, env=env, stdout=self.log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        try:
            wait_for_port(self.port, timeout, alive=lambda: self.proc.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{self.name}: {exc}\n{self.output_tail()}") from None
        time.sleep(0.3)  # let a supervisor's worker finish starting behind an early listener

    def output_tail(self, lines: int = 15) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGINT to the whole session, then SIGKILL after 10 s: nothing is left behind."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.proc.pid, signal.SIGKILL)  # stray workers of a supervisor, if any
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


# -- how a scenario runs each server -------------------------------------------------------------
def server_cpu(scenario: Scenario, settings: Settings) -> int | None:
    return settings.server_cpu if scenario.pinned else None


def load_cpu(scenario: Scenario, settings: Settings) -> int | None:
    return settings.load_cpu if scenario.pinned else None


@cache
def uvicorn_has_sansio(python: str) -> bool:
    """Whether the uvicorn installed for ``python`` offers ``--ws websockets-sansio``."""
    code = "import uvicorn.protocols.websockets.websockets_sansio_impl"
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def run_options(scenario: Scenario, server_name: str, settings: Settings) -> RunOptions:
    sansio = (scenario.uvicorn_ws_sansio and server_name.startswith("uvicorn")
              and uvicorn_has_sansio(str(settings.bench_python)))
    return RunOptions(workers=scenario.workers, uvicorn_ws="websockets-sansio" if sansio else None)


# -- one measured run per scenario kind -----------------------------------------------------------
WORKER_PROBE_SECONDS = 1.0


def _wrk_run(scenario: Scenario, server: RunningServer, settings: Settings) -> dict:
    cpu_for_load = load_cpu(scenario, settings)
    if settings.warmup > 0:
        run_wrk(scenario.wrk, server.port, settings.warmup, cpu_for_load, dict(os.environ))
    watch = LoadWatch(server.proc.pid).start()
    cpu0 = tree_cpu_seconds(server.proc.pid)
    report = run_wrk(scenario.wrk, server.port, settings.duration, cpu_for_load, dict(os.environ))
    cpu = tree_cpu_seconds(server.proc.pid) - cpu0
    report["disturbance"] = watch.stop()
    if report["requests"]:
        report["server_cpu_us_per_request"] = round(cpu / report["requests"] * 1e6, 2)
    if scenario.worker_probe is not None:
        probe = run_wrk(scenario.worker_probe, server.port, WORKER_PROBE_SECONDS, cpu_for_load, dict(os.environ))
        report["worker_responses"] = probe.get("worker_responses", {})
    return report


def _loadgen_argv(scenario: Scenario, port: int, settings: Settings, warmup: float, duration: float) -> list[str]:
    argv = [sys.executable, "-m", "benchmarks.loadgen", scenario.loadgen_mode, "--port", str(port),
            "--warmup", str(warmup), "--duration", str(duration), *scenario.loadgen_args]
    return pinned(load_cpu(scenario, settings), argv)


def _ws_run(scenario: Scenario, server: RunningServer, settings: Settings) -> dict:
    argv = _loadgen_argv(scenario, server.port, settings, settings.warmup, settings.duration)
    # The warm-up happens inside the load generator, before its measured window.
    watch = LoadWatch(server.proc.pid).start()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=settings.warmup + settings.duration + 60)
    result = _last_json(done.stdout, done.stderr)
    result["disturbance"] = watch.stop()
    result["command"] = " ".join(argv)
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


def _idle_run(scenario: Scenario, server: RunningServer, settings: Settings) -> dict:
    """RSS of the server tree before and while COUNT idle connections are open."""
    _warm_up_one_request(server.port)
    time.sleep(0.5)
    before = tree_rss_kib(server.proc.pid)
    argv = _loadgen_argv(scenario, server.port, settings, 0, 0)
    watch = LoadWatch(server.proc.pid).start()
    gen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, cwd=REPO_ROOT)
    try:
        ready = _read_ready(gen, timeout=60)
        time.sleep(1.0)  # let the server settle (allocations after the last handshake)
        after = tree_rss_kib(server.proc.pid)
        out, err = gen.communicate("measured\n", timeout=60)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    result = _last_json(out, err)
    if "error" in result:
        raise RuntimeError(result["error"])
    count = ready["open"]
    result.update({
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rate": round((after - before) * 1000 / count, 1),  # KiB per 1,000 connections
        "open_seconds": ready["seconds"],
        "disturbance": watch.stop(),
        "command": " ".join(argv),
    })
    if result.get("still_open_at_measurement", count) < count:
        raise RuntimeError(f"only {result['still_open_at_measurement']} of {count} connections stayed open")
    return result


def _warm_up_one_request(port: int) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass


def _read_ready(gen: subprocess.Popen, timeout: float) -> dict:
    import selectors

    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(gen.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = gen.stdout.readline()
            if not line:
                break
            if line.startswith("READY "):
                return json.loads(line[6:])
            if line.startswith("{"):
                raise RuntimeError(json.loads(line).get("error", line))
    raise RuntimeError("the load generator did not open its connections in time")


def _last_json(stdout: str, stderr: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": f"no result from the load generator: {stderr.strip()[-500:]}"}


RUNNERS = {"wrk": _wrk_run, "ws": _ws_run, "idle": _idle_run}


# -- the matrix -----------------------------------------------------------------------------------
def measure_once(scenario: Scenario, server_name: str, settings: Settings, tag: str) -> dict:
    """Start a fresh server, measure the scenario once, stop the server."""
    server = RunningServer(server_name, scenario.app, settings, tag,
                           run_options(scenario, server_name, settings), server_cpu(scenario, settings))
    try:
        server.wait_ready()
        result = RUNNERS[scenario.kind](scenario, server, settings)
        result["server_command"] = server.command
        return result
    except Exception as exc:
        tail = server.output_tail()
        return {"error": f"{exc}".strip() + (f"\n--- server output ---\n{tail}" if tail else "")}
    finally:
        server.stop()


def measure_with_retries(scenario: Scenario, server_name: str, settings: Settings, tag: str) -> tuple[dict, list[dict]]:
    """A run on a quiet machine, redone up to ``retries`` times; the least disturbed one is kept."""
    attempts: list[dict] = []
    # RSS does not depend on the share of CPU the server got: memory runs are never redone.
    retries = 0 if scenario.kind == "idle" else settings.retries
    for attempt in range(retries + 1):
        result = measure_once(scenario, server_name, settings, f"{tag}-a{attempt}")
        attempts.append(result)
        if "error" in result or _other_cpu(result) <= settings.max_other_cpu or attempt == retries:
            break
        settings.say(f"    disturbed ({_other_cpu(result):.2f} cores used by other processes); redoing")
        time.sleep(2)
    kept = min(attempts, key=_other_cpu)
    kept["disturbed"] = "error" not in kept and retries > 0 and _other_cpu(kept) > settings.max_other_cpu
    discarded = [a for a in attempts if a is not kept]
    return kept, discarded


def _other_cpu(result: dict) -> float:
    return result.get("disturbance", {}).get("other_cpu", 0.0)


def run_matrix(settings: Settings, on_scenario_done=None) -> dict:
    """Scenario by scenario: repetition 1 of every server, then repetition 2, ... (A B C A B C).

    ``on_scenario_done(partial_results)`` is called after each scenario, so that a long run that
    is interrupted still leaves a report of what it measured.
    """
    runs: list[dict] = []
    discarded: list[dict] = []
    for index, scenario in enumerate(settings.scenarios):
        if index and on_scenario_done is not None:
            done = settings.scenarios[:index]
            on_scenario_done({"runs": runs, "discarded": discarded,
                              "summary": summarize(runs, settings, done), "complete": False})
        settings.say(f"== {scenario.name}: {scenario.title}")
        for rep in range(settings.repeat):
            for server_name in filter(scenario.runs_on, settings.servers):
                tag = f"{scenario.name}-r{rep}"
                result, dropped = measure_with_retries(scenario, server_name, settings, tag)
                base = {"scenario": scenario.name, "server": server_name, "repetition": rep}
                runs.append({**base, **result})
                discarded += [{**base, **d} for d in dropped]
                settings.say("  " + _describe_run(server_name, rep, scenario, result))
    return {"runs": runs, "discarded": discarded,
            "summary": summarize(runs, settings, settings.scenarios), "complete": True}


def worker_shares(responses: dict) -> list[float]:
    """Per worker, its percentage of the probe's responses, largest first."""
    total = sum(responses.values())
    return sorted((round(100 * n / total, 1) for n in responses.values()), reverse=True) if total else []


def _run_facts(good: list[dict]) -> dict:
    """What the report shows besides medians: the negotiated extension, the per-run worker shares."""
    facts = {}
    deflate = sorted({r["deflate"] for r in good if r.get("deflate")})
    if deflate:
        facts["deflate"] = " / ".join(deflate)
    shares = [worker_shares(r["worker_responses"]) for r in good if "worker_responses" in r]
    if shares:
        facts["worker_shares"] = shares
    return facts


def _describe_run(server: str, rep: int, scenario: Scenario, result: dict) -> str:
    head = f"{server:<14} rep {rep + 1}: "
    if "error" in result:
        return head + "ERROR " + result["error"].splitlines()[0][:160]
    text = head + f"{result['rate']:>10.1f} {scenario.unit}"
    if result.get("p99_ms") is not None:
        text += f"  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
    if result.get("payload_mb_per_s") is not None:
        text += f"  {result['payload_mb_per_s']:.1f} MB/s payload"
    if "worker_responses" in result:
        text += "  workers " + "/".join(f"{share:.0f}%" for share in worker_shares(result["worker_responses"]))
    text += f"  (others {_other_cpu(result):.2f} cores)"
    return text + ("  DISTURBED" if result.get("disturbed") else "")


def summarize(runs: list[dict], settings: Settings, scenarios: list[Scenario]) -> list[dict]:
    """Medians per (scenario, server) over the runs that completed."""
    rows = []
    for scenario in scenarios:
        for server in filter(scenario.runs_on, settings.servers):
            mine = [r for r in runs if r["scenario"] == scenario.name and r["server"] == server]
            good = [r for r in mine if "error" not in r]
            row = {"scenario": scenario.name, "server": server, "unit": scenario.unit,
                   "runs": len(good), "disturbed_runs": sum(bool(r.get("disturbed")) for r in good)}
            if good:
                row["rate"] = statistics.median(r["rate"] for r in good)
                row["rates"] = [round(r["rate"], 1) for r in good]
                for key in ("p50_ms", "p99_ms", "server_cpu_us_per_request", "payload_mb_per_s"):
                    values = [r[key] for r in good if r.get(key) is not None]
                    row[key] = statistics.median(values) if values else None
                row.update(_run_facts(good))
            else:
                row["error"] = mine[0]["error"].splitlines()[0] if mine else "not run"
            rows.append(row)
    return rows
