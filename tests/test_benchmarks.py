"""The benchmark tool works end to end: a few seconds of fastserve only, never a speed assertion.

Runs ``python -m benchmarks`` with the project's interpreter for the server (no peer venv is
installed), one short wrk scenario and one WebSocket scenario, and checks the report it writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .helpers import ROOT

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("taskset") is None,
    reason="SKIPPED LOUDLY: wrk (and taskset) are needed for the benchmark smoke test; "
    "install them with `apt-get install wrk util-linux` or `make system-deps` as root",
)


def test_quick_benchmark_writes_a_results_table(tmp_path):
    output = tmp_path / "RESULTS.md"
    command = [
        sys.executable, "-m", "benchmarks", "--quick", "--servers", "fastserve",
        "--scenarios", "hello-c64,ws-echo", "--duration", "1", "--warmup", "0",
        "--server-python", sys.executable, "--no-chart", "--output", str(output),
    ]
    if (os.cpu_count() or 1) < 2:
        command.append("--no-pin")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

    summary = json.loads((tmp_path / "results.json").read_text())["summary"]
    rates = {row["scenario"]: row.get("rate") for row in summary}
    assert rates["hello-c64"] and rates["hello-c64"] > 0, summary
    assert rates["ws-echo"] and rates["ws-echo"] > 0, summary

    report = output.read_text()
    assert "| server | req/s |" in report
    fastserve_rows = [line for line in report.splitlines() if line.startswith("| fastserve |")]
    assert len(fastserve_rows) == 2
    assert all(float(row.split("|")[2]) > 0 for row in fastserve_rows)
