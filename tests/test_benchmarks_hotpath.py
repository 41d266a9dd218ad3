"""The in-process hot-path harness (``python -m benchmarks.hotpath``) runs: never a speed assertion."""

from __future__ import annotations

import math
import subprocess
import sys

from .helpers import ROOT


def test_hotpath_harness_reports_microseconds_per_request():
    # The harness checks itself that every request got the whole response on an open connection.
    for extra in ([], ["--pipeline", "4", "--loop", "asyncio"], ["--close"], ["--browser"]):
        command = [sys.executable, "-m", "benchmarks.hotpath", "--requests", "400", "--repeat", "1", *extra]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        build, *lines = done.stdout.splitlines()
        assert build in ("fastserve: compiled", "fastserve: pure Python"), done.stdout
        assert [line.split("/")[0] for line in lines] == ["httptools", "h11"], done.stdout
        for line in lines:
            # A figure, not a speed check: with 400 requests the floor subtracted can outweigh it.
            assert math.isfinite(float(line.split(": ")[1].split(" µs")[0])), line


def test_ws_hotpath_harness_reports_microseconds_per_message():
    # It checks itself that every message fed was echoed in its turn (--deflate: the ws-deflate
    # scenario's compressed mix, negotiated by the real handshake).
    for extra in ([], ["--deflate"]):
        command = [sys.executable, "-m", "benchmarks.ws_hotpath", *extra, "300", "1"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.endswith(" µs per message\n"), done.stdout
        assert math.isfinite(float(done.stdout.split(" µs")[0])), done.stdout
