"""RESULTS.md and results.json from a finished matrix; the chart is drawn by chart.py.

RESULTS.md is regenerated on every run down to the NOTES_MARKER line; whatever follows that line
(profiles, analysis written by hand) is carried over unchanged.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .scenarios import SCENARIOS
from .servers import SERVERS, uvicorn_baseline

NOTES_MARKER = "<!-- everything below this line is kept when the benchmark regenerates this file -->"

# (scenario, server, baseline, minimum ratio, description). Memory targets are "lower is better".
TARGETS = (
    ("hello-c64", "fastserve", "uvicorn", 1.6, "hello c64: >= 1.6x uvicorn (aim 2x)"),
    ("hello-c64", "fastserve", "granian", 1.3, "hello c64: >= 1.3x granian ASGI"),
    ("hello-c64", "fastserve-h11", "uvicorn-h11", 1.3, "hello c64, h11: >= 1.3x uvicorn-h11"),
    ("64k", "fastserve", "uvicorn", 1.0, "64 KiB response: >= uvicorn"),
    ("echo-1m", "fastserve", "uvicorn", 1.0, "1 MiB echo: >= uvicorn"),
    ("close", "fastserve", "uvicorn", 1.0, "Connection: close: >= uvicorn"),
    ("pipeline16", "fastserve", "uvicorn", 1.0, "pipelined 16: >= uvicorn"),
    ("ws-echo", "fastserve", "uvicorn", 1.5, "WebSocket echo: >= 1.5x uvicorn"),
)
MEMORY_TARGETS = (
    ("idle-http", "idle keep-alive memory: below uvicorn"),
    ("idle-ws", "idle WebSocket memory: below uvicorn"),
)


def _row(summary: list[dict], scenario: str, server: str) -> dict | None:
    for row in summary:
        if row["scenario"] == scenario and row["server"] == server and row.get("rate") is not None:
            return row
    return None


def ratio(summary: list[dict], scenario: str, server: str, baseline: str) -> float | None:
    mine, base = _row(summary, scenario, server), _row(summary, scenario, baseline)
    if mine is None or base is None or not base["rate"]:
        return None
    return mine["rate"] / base["rate"]


def cpu_ratio(summary: list[dict], scenario: str, server: str, baseline: str) -> float | None:
    """Baseline's server CPU per request over this server's: the throughput ratio both would
    reach with one full core each. Much less sensitive to other load than the rates are."""
    mine, base = _row(summary, scenario, server), _row(summary, scenario, baseline)
    if mine is None or base is None:
        return None
    mine_us, base_us = mine.get("server_cpu_us_per_request"), base.get("server_cpu_us_per_request")
    if not mine_us or not base_us:
        return None
    return base_us / mine_us


def _verdict(value: float | None, minimum: float) -> str:
    if value is None:
        return "-"
    return "met" if value >= minimum else "**missed**"


def target_lines(summary: list[dict]) -> list[str]:
    lines = ["| target | rate ratio (medians) | verdict | CPU-per-request ratio | verdict |",
             "|---|---|---|---|---|"]
    for scenario, server, baseline, minimum, text in TARGETS:
        value = ratio(summary, scenario, server, baseline)
        by_cpu = cpu_ratio(summary, scenario, server, baseline)
        if value is None:
            lines.append(f"| {text} | not measured | - | - | - |")
            continue
        lines.append(f"| {text} | {value:.2f}x | {_verdict(value, minimum)} | {_fmt_ratio(by_cpu)} | "
                     f"{_verdict(by_cpu, minimum)} |")
    mine, base = _row(summary, "hello-c64", "fastserve"), _row(summary, "hello-c64", "uvicorn")
    if mine and base and mine.get("p99_ms") and base.get("p99_ms"):
        verdict = "met" if mine["p99_ms"] <= base["p99_ms"] else "**missed**"
        lines.append(f"| hello c64: p99 no worse than uvicorn | {mine['p99_ms']:.2f} ms vs "
                     f"{base['p99_ms']:.2f} ms | {verdict} | | |")
    else:
        lines.append("| hello c64: p99 no worse than uvicorn | not measured | - | | |")
    for scenario, text in MEMORY_TARGETS:
        mine, base = _row(summary, scenario, "fastserve"), _row(summary, scenario, "uvicorn")
        if mine and base:
            verdict = "met" if mine["rate"] < base["rate"] else "**missed**"
            lines.append(f"| {text} | {mine['rate']:.0f} vs {base['rate']:.0f} KiB/1000 | {verdict} | | |")
        else:
            lines.append(f"| {text} | not measured | - | | |")
    lines += ["", "The CPU-per-request ratio is uvicorn's (or granian's) server CPU time per request "
              "divided by fastserve's, both from the same runs: the ratio of the rates each would "
              "reach with a full core. When other processes take CPU from the server, the rates "
              "shrink with the share of the core the server got; this ratio moves much less (it still "
              "assumes the server, not wrk, is the bottleneck)."]
    return lines


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fmt_ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def scenario_table(summary: list[dict], scenario: str) -> list[str]:
    info = SCENARIOS[scenario]
    memory = info.kind == "idle"
    head = "| server | " + ("KiB per 1,000 idle (lower is better)" if memory else info.unit) + \
        " | vs uvicorn | vs granian | p50 ms | p99 ms | server CPU µs/req | runs (all values) |"
    lines = [f"**{scenario}** — {info.title}", "", head, "|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in (r for r in summary if r["scenario"] == scenario):
        server = row["server"]
        if row.get("rate") is None:
            lines.append(f"| {server} | n/a: {row.get('error', '')[:90]} | | | | | | 0 |")
            continue
        base = uvicorn_baseline(server)
        vs_uvicorn = ratio(summary, scenario, server, base)
        vs_granian = ratio(summary, scenario, server, "granian")
        rates = ", ".join(f"{v:.0f}" for v in row["rates"])
        disturbed = f", {row['disturbed_runs']} disturbed" if row["disturbed_runs"] else ""
        label = f"{_fmt_ratio(vs_uvicorn)}" + (f" (vs {base})" if base != "uvicorn" and vs_uvicorn else "")
        lines.append(
            f"| {server} | {row['rate']:.0f} | {label} | {_fmt_ratio(vs_granian)} | "
            f"{_fmt(row.get('p50_ms'))} | {_fmt(row.get('p99_ms'))} | "
            f"{_fmt(row.get('server_cpu_us_per_request'), 1)} | {row['runs']}{disturbed} ({rates}) |"
        )
    return lines + [""] + _scenario_extras(summary, scenario)


def _scenario_extras(summary: list[dict], scenario: str) -> list[str]:
    """Lines under a table for what only some scenarios measure: payload MB/s, worker shares."""
    rows = [r for r in summary if r["scenario"] == scenario and r.get("rate") is not None]
    lines = []
    payload = [f"{r['server']} {r['payload_mb_per_s']:.1f}" for r in rows if r.get("payload_mb_per_s") is not None]
    if payload:
        lines.append("Payload echoed back (uncompressed MB/s, medians): " + ", ".join(payload) + ".")
    deflate = [f"{r['server']}: {r['deflate']}" for r in rows if r.get("deflate")]
    if deflate:
        lines.append("Extension the server agreed to: " + "; ".join(deflate) + ".")
    shares = [f"{r['server']} " + ", ".join("/".join(f"{v:.0f}" for v in run) for run in r["worker_shares"])
              for r in rows if r.get("worker_shares")]
    if shares:
        lines.append("Responses per worker in a 1 s probe after each run (% per worker, largest first, "
                     "one group per run): " + "; ".join(shares) + ".")
    return [*lines, ""] if lines else []


def conditions_lines(results: dict) -> list[str]:
    kept = [r for r in results["runs"] if "error" not in r]
    others = [r.get("disturbance", {}).get("other_cpu", 0.0) for r in kept]
    disturbed = sum(bool(r.get("disturbed")) for r in kept)
    meta = results["meta"]
    lines = [
        f"- Runs kept: {len(kept)}; discarded as disturbed and redone: {len(results['discarded'])}; "
        f"kept although disturbed (retries exhausted): {disturbed}.",
        f"- CPU used by other processes during kept runs (cores, averaged over each run): "
        f"median {_median(others):.2f}, max {max(others, default=0):.2f}. Threshold: "
        f"{meta['max_other_cpu']:.2f} cores.",
        f"- Load average at start: {meta['loadavg_start']}; at end: {meta['loadavg_end']}.",
    ]
    if meta.get("conditions_note"):
        lines.append(f"- {meta['conditions_note']}")
    return lines


def _unpinned_lines(meta: dict) -> list[str]:
    unpinned = [name for name in meta["scenarios"] if name in SCENARIOS and not SCENARIOS[name].pinned]
    if not unpinned:
        return []
    return [f"- Not pinned: {', '.join(unpinned)} (several workers per server): server and load generator "
            "share every core, so these rates are not comparable with the pinned scenarios."]


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else 0.0


def render_markdown(results: dict, chart_name: str | None, kept_notes: str) -> str:
    meta = results["meta"]
    summary = results["summary"]
    out = [
        "# fastserve benchmark results",
        "",
        f"Generated {meta['finished']} by `{meta['command']}`.",
        "",
        *([] if meta.get("complete") else
          ["**Partial report: the run was interrupted or is still going; only the scenarios "
           "listed below were measured.**", ""]),
        "## Conditions",
        "",
        f"- Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"{meta['machine']['memory_gib']} GiB, Linux {meta['machine']['kernel']}, "
        f"Python {meta['machine']['python']}, {meta['wrk']}.",
        f"- Server pinned to CPU {meta['server_cpu']}, load generator (wrk -t1 / benchmarks.loadgen) "
        f"pinned to CPU {meta['load_cpu']}. One worker per server, access logs off, uvloop where "
        "the server lets us choose.",
        f"- {meta['duration']} s measured after {meta['warmup']} s warm-up, {meta['repeat']} "
        "repetitions interleaved (A B C A B C ...), a fresh server process for every run; "
        "tables show medians.",
        *conditions_lines(results),
        *_unpinned_lines(meta),
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        f"fastserve source measured: {meta.get('fastserve_source', 'unknown')}.",
        "",
        "## Servers",
        "",
        *[f"- `{name}`: {SERVERS[name].description}" for name in meta["servers"]],
        "",
        "## Targets (fastserve vs peers, same run)",
        "",
        *target_lines(summary),
        "",
        "## Results",
        "",
    ]
    if chart_name:
        out += [f"![throughput relative to uvicorn]({chart_name})", ""]
    for scenario in meta["scenarios"]:
        out += scenario_table(summary, scenario)
    if results["discarded"]:
        out += ["## Discarded runs (other load on the machine)", "",
                "| scenario | server | rep | rate | other processes' CPU (cores) |", "|---|---|---|---:|---:|"]
        for d in results["discarded"]:
            out.append(f"| {d['scenario']} | {d['server']} | {d['repetition'] + 1} | "
                       f"{_fmt(d.get('rate'), 0)} | {d.get('disturbance', {}).get('other_cpu', '-')} |")
        out.append("")
    out += ["## How to reproduce", "", "```", meta["command"], "```", "",
            "Raw per-run numbers (wrk and server commands included) are in `results.json`.", "",
            NOTES_MARKER, kept_notes.rstrip("\n"), ""]
    return "\n".join(out)


def kept_notes(path: Path) -> str:
    if not path.exists():
        return ""
    text = path.read_text()
    if NOTES_MARKER not in text:
        return ""
    return text.split(NOTES_MARKER, 1)[1].lstrip("\n")


def write_outputs(results: dict, markdown_path: Path, json_path: Path, chart_path: Path | None,
                  bench_python: Path, say=print) -> None:
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    chart_name = None
    if chart_path is not None:
        done = subprocess.run([str(bench_python), "-m", "benchmarks.chart", str(json_path), str(chart_path)],
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        if done.returncode == 0:
            chart_name = _relative(chart_path, markdown_path.parent)
        else:
            say(f"chart not drawn: {done.stderr.strip()[-300:]}")
    notes = kept_notes(markdown_path)
    markdown_path.write_text(render_markdown(results, chart_name, notes))


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path.resolve())
