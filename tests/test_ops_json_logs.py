"""--log-format json: every error and access line is one JSON object (json.loads each line)."""

from __future__ import annotations

import json
import signal

import httpx

from .helpers import raw_request


def parsed_lines(server) -> list[dict]:
    entries = []
    for line in server.lines:
        entry = json.loads(line)  # every line, start-up and shutdown included
        assert {"timestamp", "level", "logger", "message"} <= entry.keys(), entry
        assert entry["timestamp"].endswith("Z") and "T" in entry["timestamp"]
        entries.append(entry)
    return entries


def test_error_and_access_lines_are_json(serve, impl):
    http, loop = impl
    server = serve("apps.ops:app", "--http", http, "--loop", loop, "--log-format", "json")
    assert httpx.get(server.url + "/?x=1", headers={"x-request-id": "abc-123"}).text == "hello"
    assert httpx.post(server.url + "/upload", content=b"x" * 1000).status_code == 200
    assert httpx.get(server.url + "/raise").status_code == 500
    raw_request(server.port, b"GET / HTTP/1.1\r\n\r\n")  # no Host: refused, one info line
    server.stop(signal.SIGINT)
    entries = parsed_lines(server)
    access = [e for e in entries if e["logger"] == "fastserve.access"]
    first = access[0]
    assert first["method"] == "GET" and first["path"] == "/" and first["query"] == "x=1"
    assert first["status"] == 200 and first["bytes"] == 5 and first["protocol"] == "HTTP/1.1"
    assert first["request_id"] == "abc-123" and first["client"].startswith("127.0.0.1:")
    assert isinstance(first["duration"], float) and 0 <= first["duration"] < 5
    assert access[1]["method"] == "POST" and "request_id" not in access[1]
    assert access[2]["status"] == 500
    failure = next(e for e in entries if e["message"] == "Exception in ASGI application")
    assert failure["level"] == "ERROR" and failure["logger"] == "fastserve.error"
    assert "RuntimeError: the app failed on purpose" in failure["exception"]
    assert any("Missing Host header" in e["message"] and e["level"] == "INFO" for e in entries)
    assert any(e["message"].startswith("fastserve running on") for e in entries)


def test_workers_write_json_lines_too(supervised):
    server = supervised("apps.ops:app", "--workers", "2", "--log-format", "json")
    first = server.wait_for_line("is serving")
    server.wait_for_line("is serving", start=server.lines.index(first) + 1)  # both workers are up
    assert httpx.get(server.url + "/").status_code == 200
    server.stop(signal.SIGINT)
    entries = parsed_lines(server)
    assert len({e["pid"] for e in entries}) >= 3  # the supervisor and both workers
    assert any(e["logger"] == "fastserve.access" for e in entries)
