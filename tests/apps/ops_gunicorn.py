"""A Gunicorn worker class with fastserve's operations options on (tests/test_ops_metrics.py)."""

from __future__ import annotations

import os

from fastserve.workers import Worker


class OpsWorker(Worker):
    CONFIG_KWARGS = {**Worker.CONFIG_KWARGS, "metrics_bind": os.environ.get("OPS_METRICS_BIND", "127.0.0.1:0"),
                     "health_path": "/healthz"}
