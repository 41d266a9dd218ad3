"""--metrics-bind: Prometheus metrics scraped and parsed with prometheus_client's own parser."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from .conftest import free_port
from .helpers import TESTS, raw_request, status_of
from .test_workers import wait_for_workers

pytest.importorskip("prometheus_client", reason="SKIPPED LOUDLY: prometheus_client is not installed (pip install -e '.[dev]')")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def exercise(url: str, port: int) -> None:
    for _ in range(5):
        assert httpx.get(url + "/").status_code == 200
    assert httpx.get(url + "/missing").status_code == 404
    assert httpx.get(url + "/raise").status_code == 500
    assert status_of(raw_request(port, b"GET / HTTP/1.1\r\n\r\n")) == 400  # no Host
    assert status_of(raw_request(port, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n")) == 413


def test_single_server_metrics(serve, impl):
    http, loop = impl
    metrics_port = free_port()
    server = serve("apps.ops:app", "--http", http, "--loop", loop, "--metrics-bind", f"127.0.0.1:{metrics_port}",
                   "--limit-request-body", "1000", "--health-path", "/healthz")
    assert f"Metrics on http://127.0.0.1:{metrics_port}/metrics" in server.output
    exercise(server.url, server.port)
    assert httpx.get(server.url + "/healthz").status_code == 200
    with socket.create_connection(("127.0.0.1", server.port)):  # one open, idle connection
        time.sleep(1.3)  # gauges are sampled once a second
        samples = scrape(metrics_port)
    assert value(samples, "fastserve_requests_total", status_class="2xx", protocol="http/1.1") == 6
    assert value(samples, "fastserve_requests_total", status_class="4xx", protocol="http/1.1") == 1
    assert value(samples, "fastserve_requests_total", status_class="5xx", protocol="http/1.1") == 1
    assert value(samples, "fastserve_refusals_total", status="400") == 1
    assert value(samples, "fastserve_refusals_total", status="413") == 1
    assert value(samples, "fastserve_refusals_total", status="431") == 0  # present, at 0
    assert value(samples, "fastserve_request_duration_seconds_count", protocol="http/1.1") == 8
    assert value(samples, "fastserve_request_start_delay_seconds_count") == 8
    assert value(samples, "fastserve_connections_open") >= 1
    assert value(samples, "fastserve_requests_in_flight") == 0
    assert value(samples, "process_resident_memory_bytes") > 0
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/other").status_code == 404
    assert not any("GET /metrics" in line or "GET /other" in line for line in server.lines)  # no access line: not the app's port


def test_websocket_metrics(serve):
    from websockets.sync.client import connect

    metrics_port = free_port()
    server = serve("apps.ops:app", "--metrics-bind", str(metrics_port))  # PORT alone: 127.0.0.1
    with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        ws.send("hi")
        assert ws.recv(5) == "hi"
        time.sleep(1.3)
        samples = scrape(metrics_port)
        assert value(samples, "fastserve_websockets_open") == 1
        assert value(samples, "fastserve_connections_open") == 1
    assert value(samples, "fastserve_requests_total", status_class="1xx", protocol="websocket") == 1
    time.sleep(1.3)
    assert value(scrape(metrics_port), "fastserve_websockets_open") == 0


def test_workers_metrics_are_summed_by_the_supervisor(supervised):
    metrics_port = free_port()
    server = supervised("apps.ops:app", "--workers", "2", "--metrics-bind", f"127.0.0.1:{metrics_port}",
                        "--limit-request-body", "1000", "--timeout-worker-healthcheck", "2")
    workers = wait_for_workers(server, 2)
    pids = set()
    for _ in range(20):
        pids.add(int(httpx.get(server.url + "/pid", headers={"connection": "close"}).text))
    exercise(server.url, server.port)
    samples = scrape(metrics_port)
    assert value(samples, "fastserve_requests_total", status_class="2xx", protocol="http/1.1") == 25
    assert value(samples, "fastserve_refusals_total", status="413") == 1
    assert value(samples, "fastserve_worker_restarts_total") == 0
    # A stuck worker is replaced: one restart, and the sum keeps the counts of the dead worker.
    blocker = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    blocker.sendall(b"GET /block?s=30 HTTP/1.1\r\nHost: x\r\n\r\n")
    server.wait_for_line("is stuck", timeout=15)
    server.wait_for_line("starting a replacement", timeout=10)
    wait_for_workers(server, 2)
    blocker.close()
    samples = scrape(metrics_port)
    assert value(samples, "fastserve_worker_restarts_total") == 1
    assert value(samples, "fastserve_requests_total", status_class="2xx", protocol="http/1.1") == 25
    assert len(pids | set(workers)) >= 2


def test_metrics_without_prometheus_client_is_one_line(tmp_path):
    # A prometheus_client that cannot be imported: the server refuses to start, in one line.
    (tmp_path / "prometheus_client.py").write_text("raise ImportError('not installed')\n")
    result = subprocess.run([sys.executable, "-m", "fastserve", "apps.ops:app", "--app-dir", str(TESTS), "--port", "0",
                             "--metrics-bind", "127.0.0.1:0"], capture_output=True, text=True, timeout=20,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stderr
    assert "--metrics-bind needs prometheus_client: pip install 'fastserve[metrics]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_metrics_bind_is_validated():
    result = subprocess.run([sys.executable, "-m", "fastserve", "apps.ops:app", "--metrics-bind", "nope"], capture_output=True, text=True)
    assert result.returncode == 2 and "--metrics-bind: expected HOST:PORT; got 'nope'" in result.stderr


def test_every_operations_feature_is_off_by_default_and_then_costs_nothing():
    # The connection class is the plain one unless a feature is on (chosen once, at start).
    from fastserve.config import Config
    from fastserve.http1.connection import HTTPProtocol
    from fastserve.negotiate import protocol_class_for

    assert protocol_class_for(Config(app="x:y")) is HTTPProtocol
    chosen = protocol_class_for(Config(app="x:y", metrics_bind="127.0.0.1:0", health_path="/h", limit_request_body=10, proxy_protocol=True))
    names = [cls.__name__ for cls in chosen.__mro__]
    assert names[:5] == ["ProxyProtocolHTTP", "MetricsHTTPProtocol", "HealthHTTPProtocol", "BodyLimitHTTPProtocol", "HTTPProtocol"]


def test_gunicorn_workers_each_serve_the_sum(supervised, tmp_path):
    from .test_gunicorn import GUNICORN
    from .test_gunicorn import wait_for_workers as wait_for_gunicorn_workers

    metrics_port = free_port()
    command = [GUNICORN, "-k", "ops_gunicorn.OpsWorker", "--no-control-socket", "--chdir", str(TESTS / "apps"),
               "-b", "127.0.0.1:0", "-w", "2", "ops:app"]
    env = {"OPS_METRICS_BIND": f"127.0.0.1:{metrics_port}", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    server = supervised("ops:app", command=command, env=env)
    wait_for_gunicorn_workers(server, 2)
    url = server.url
    for _ in range(10):
        assert httpx.get(url + "/", headers={"connection": "close"}).status_code == 200
    assert httpx.get(url + "/healthz").text == "OK\n"
    # Whichever worker answers the scrape (SO_REUSEPORT), it reports every worker's requests.
    for _ in range(4):
        samples = scrape(metrics_port)
        assert value(samples, "fastserve_requests_total", status_class="2xx", protocol="http/1.1") == 11


def test_metrics_address_in_use_is_one_line_and_status_1():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "fastserve", "apps.ops:app", "--app-dir", str(TESTS), "--port", "0",
                                 "--metrics-bind", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert f"Could not bind the metrics address 127.0.0.1:{port} (--metrics-bind): Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_http2_requests_are_counted(serve):
    metrics_port = free_port()
    server = serve("apps.ops:app", "--metrics-bind", f"127.0.0.1:{metrics_port}")
    with httpx.Client(http1=False, http2=True) as client:
        for _ in range(3):
            assert client.get(server.url + "/").http_version == "HTTP/2"
    samples = scrape(metrics_port)
    assert value(samples, "fastserve_requests_total", status_class="2xx", protocol="http/2") == 3
