"""A bar chart of every scenario's medians relative to uvicorn (run with the benchmark venv).

``python -m benchmarks.chart results.json chart.png``; needs matplotlib, which lives in
benchmarks/.venv rather than in the project's venv.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def relative_rates(results: dict) -> tuple[list[str], list[str], dict[str, list[float]]]:
    """Scenarios, servers and, per server, its median / uvicorn's (memory: uvicorn's / its)."""
    summary = results["summary"]
    scenarios = results["meta"]["scenarios"]
    servers = results["meta"]["servers"]
    by_key = {(r["scenario"], r["server"]): r.get("rate") for r in summary}
    values: dict[str, list[float]] = {s: [] for s in servers}
    for scenario in scenarios:
        base = by_key.get((scenario, "uvicorn"))
        for server in servers:
            mine = by_key.get((scenario, server))
            if not mine or not base:
                values[server].append(0.0)
            elif scenario.startswith("idle-"):
                values[server].append(base / mine if mine > 0 else 0.0)  # less memory = higher bar
            else:
                values[server].append(mine / base)
    return scenarios, servers, values


def draw(results: dict, out_path: str) -> None:
    scenarios, servers, values = relative_rates(results)
    width = 0.8 / max(1, len(servers))
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(scenarios)), 5))
    for i, server in enumerate(servers):
        positions = [x + (i - (len(servers) - 1) / 2) * width for x in range(len(scenarios))]
        ax.bar(positions, values[server], width, label=server)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels(scenarios, rotation=30, ha="right")
    ax.set_ylabel("relative to uvicorn (higher is better; memory inverted)")
    ax.set_title("fastserve benchmark: medians relative to uvicorn (missing bar = not supported/failed)")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        draw(json.load(f), sys.argv[2])
