"""Every CLI option reaches the server; errors are one line with the right exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from fastserve.cli import main as cli_command
from fastserve.config import option_fields

from .conftest import free_port
from .helpers import ROOT, TESTS, ServerProcess, http_get, raw_request, status_of


def fastserve(*args, env=None, timeout=20):
    return subprocess.run([sys.executable, "-m", "fastserve", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)


def test_version():
    result = fastserve("--version")
    assert result.returncode == 0 and "fastserve" in result.stdout


def test_help_lists_every_option():
    result = fastserve("--help")
    for f in option_fields():
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        assert flag in result.stdout, flag


@pytest.mark.parametrize("args, message", [
    (["apps.basic:app", "--port", "notanumber"], "notanumber"),
    (["apps.basic:app", "--http", "nope"], "nope"),
    (["apps.basic:app", "--loop", "tokio"], "tokio"),
    (["apps.basic:app", "--header", "no-colon"], "NAME:VALUE"),
    (["apps.basic:app", "--forwarded-allow-ips", "not-an-ip"], "not-an-ip"),
    (["apps.basic:app", "--limit-request-line", "0"], "limit-request-line"),
    (["apps.basic:app", "--uds", "/tmp/x.sock", "--fd", "3"], "--uds"),
    (["apps.basic:app", "--ssl-keyfile", "key.pem"], "--ssl-certfile"),
])
def test_bad_options_exit_2_with_one_line(args, message):
    result = fastserve(*args, "--app-dir", str(TESTS))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("app, message", [
    ("nosuchmodule:app", 'Could not import module "nosuchmodule"'),
    ("apps.basic:nosuchattr", 'Attribute "nosuchattr" not found'),
    ("apps.basic", "must be in format"),
])
def test_unimportable_app_exits_3_with_one_line(app, message):
    result = fastserve(app, "--app-dir", str(TESTS))
    assert result.returncode == 3  # as uvicorn: 3 is "the app could not be loaded"
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_lifespan_on_startup_failure_exits_3():
    result = fastserve("apps.variants:lifespan_fails", "--app-dir", str(TESTS), "--lifespan", "on")
    assert result.returncode == 3
    assert "database is unreachable" in result.stderr
    assert "Application startup failed" in result.stderr


def test_lifespan_on_with_app_that_raises_exits_3():
    result = fastserve("apps.variants:lifespan_raises", "--app-dir", str(TESTS), "--lifespan", "on")
    assert result.returncode == 3


def test_lifespan_auto_continues_when_unsupported(serve):
    server = serve("apps.variants:lifespan_raises")
    assert httpx.get(server.url).json()["ok"] is True
    server.wait_for_line("appears unsupported")


def test_lifespan_off_never_sends_it(serve):
    server = serve("apps.variants:lifespan_fails", "--lifespan", "off")
    assert httpx.get(server.url).status_code == 500  # the app only handles lifespan; it returns


def test_lifespan_state_is_copied_per_request_and_shutdown_runs(serve):
    server = serve("apps.variants:lifespan_records")
    assert [httpx.get(server.url).json()["counter"] for _ in range(3)] == [1, 1, 1]
    assert server.stop() == 0
    assert "LIFESPAN SHUTDOWN RAN" in server.output


def test_asgi2_detected_and_forced(serve):
    assert httpx.get(serve("apps.variants:ASGI2App").url).json() == {"interface": "asgi2"}
    assert httpx.get(serve("apps.variants:ASGI2App", "--interface", "asgi2").url).json() == {"interface": "asgi2"}


def test_factory_env_file_and_nested_attr(serve, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nexport FASTSERVE_TEST_VALUE='from env file'\n")
    server = serve("apps.variants:create_app", "--factory", "--env-file", str(env_file))
    assert httpx.get(server.url).json() == {"factory": True, "env": "from env file"}
    assert httpx.get(serve("apps.variants:Nested.Inner.app").url).json() == {"nested": True}


def test_environment_variables_set_options(serve):
    server = serve("apps.basic:app", env={"FASTSERVE_ROOT_PATH": "/mounted", "FASTSERVE_SERVER_HEADER": "false"})
    r = httpx.get(server.url + "/scope")
    assert r.json()["root_path"] == "/mounted"
    assert "server" not in r.headers


def test_app_from_environment(serve):
    server = ServerProcess("", env={"FASTSERVE_APP": "apps.basic:app"},
                           command=[sys.executable, "-m", "fastserve", "--app-dir", str(TESTS), "--port", "0"]).start()
    try:
        assert httpx.get(server.url).text == "Hello, world!"
    finally:
        server.stop()


def test_header_and_default_header_switches(serve):
    server = serve("apps.basic:app", "--header", "X-Frame-Options: DENY", "--header", "x-team:core",
                   "--no-server-header", "--no-date-header")
    r = httpx.get(server.url)
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-team"] == "core"
    assert "server" not in r.headers and "date" not in r.headers


def test_root_path(serve):
    assert httpx.get(serve("apps.basic:app", "--root-path", "/api").url + "/scope").json()["root_path"] == "/api"


def test_access_log_format_and_switch(serve):
    server = serve("apps.basic:app", "--access-log-format", 'ACCESS %(m)s %(U)s %(q)s %(s)s %(B)s %(D)sus %({user-agent}i)s %({content-type}o)s')
    httpx.get(server.url + "/?x=1", headers={"user-agent": "probe/1"})
    line = server.wait_for_line("ACCESS GET")
    assert "ACCESS GET / x=1 200 13 " in line and "us probe/1 text/plain" in line
    quiet = serve("apps.basic:app", "--no-access-log")
    httpx.get(quiet.url)
    assert '"GET / HTTP/1.1"' not in quiet.output


@pytest.mark.parametrize("kind", ["json", "yaml", "ini"])
def test_log_config_files(serve, tmp_path, kind):
    log_file = tmp_path / "server.log"
    path = tmp_path / f"logging.{kind}"
    if kind == "ini":
        path.write_text(
            "[loggers]\nkeys=root,fastserve\n[handlers]\nkeys=file\n[formatters]\nkeys=plain\n"
            "[logger_root]\nlevel=WARNING\nhandlers=\n"
            "[logger_fastserve]\nlevel=INFO\nhandlers=file\nqualname=fastserve\npropagate=0\n"
            f"[handler_file]\nclass=FileHandler\nformatter=plain\nargs=({str(log_file)!r},)\n"
            "[formatter_plain]\nformat=CUSTOM %(name)s %(message)s\n")
    else:
        config = {"version": 1, "disable_existing_loggers": False,
                  "formatters": {"plain": {"format": "CUSTOM %(name)s %(message)s"}},
                  "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain"}},
                  "loggers": {"fastserve": {"handlers": ["file"], "level": "INFO", "propagate": False}}}
        if kind == "json":
            path.write_text(json.dumps(config))
        else:
            import yaml
            path.write_text(yaml.safe_dump(config))
    server = ServerProcess("apps.basic:app", "--log-config", str(path), wait_for=None).start()
    try:
        deadline = __import__("time").monotonic() + 10
        while "running on" not in (log_file.read_text() if log_file.exists() else ""):
            assert __import__("time").monotonic() < deadline, server.output
            __import__("time").sleep(0.05)
        port = int(log_file.read_text().split("running on http://127.0.0.1:")[1].split()[0])
        httpx.get(f"http://127.0.0.1:{port}/")
        __import__("time").sleep(0.2)
        text = log_file.read_text()
        assert "CUSTOM fastserve.error fastserve running on" in text
        assert 'CUSTOM fastserve.access 127.0.0.1' in text
    finally:
        server.stop()


def test_log_level_debug_and_warning(serve):
    port = free_port()  # the 'running on' line that would tell the port is the one not to print
    quiet = serve("apps.basic:app", "--log-level", "warning", "--port", str(port), wait_for=None)
    wait_until_served(f"http://127.0.0.1:{port}/")  # it logs 'running on' before it serves anything
    quiet.stop()  # and every line it wrote has been read
    assert "running on" not in quiet.output


def wait_until_served(url: str, timeout: float = 10.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            http_get(url, timeout=2).raise_for_status()
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_limit_concurrency_answers_503(serve):
    import threading
    server = serve("apps.basic:app", "--limit-concurrency", "1")
    slow = threading.Thread(target=lambda: httpx.get(server.url + "/sleep?t=1.5", timeout=10))
    slow.start()
    import time
    time.sleep(0.5)
    response = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    slow.join()
    assert status_of(response) == 503
    assert b"retry-after: 1" in response.lower()
    assert httpx.get(server.url).status_code == 200


def test_timeout_keep_alive_closes_idle_connection(serve):
    import socket
    import time
    server = serve("apps.basic:app", "--timeout-keep-alive", "1")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(65536)
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed by the server
        assert 0.5 < time.monotonic() - started < 3


@pytest.mark.two_impls
def test_keep_alive_sweep_closes_idle_connections_and_starts_again_after_a_quiet_spell(serve, impl):
    # One sweep per server closes idle connections (not a timer per connection), and stops while
    # no connection is open: connections after a quiet spell are still closed, an unused one too,
    # never before the timeout, while one busy past the timeout is not.
    import socket
    import time
    http, loop = impl
    server = serve("apps.basic:app", "--http", http, "--loop", loop, "--timeout-keep-alive", "0.4")
    for _ in range(2):  # the second round comes after the sweep stopped (no connection open)
        used, unused, busy = (socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3))
        with used, unused, busy:
            busy.sendall(b"GET /sleep?t=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
            used.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert used.recv(65536).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert used.recv(1) == b"" and unused.recv(1) == b""  # closed by the server
            assert 0.3 < time.monotonic() - started < 3
            assert busy.recv(65536).startswith(b"HTTP/1.1 200")  # answered, not closed at 0.4 s
        time.sleep(0.5)


def test_backlog_option_accepted(serve):
    assert httpx.get(serve("apps.basic:app", "--backlog", "16").url).status_code == 200


def test_port_zero_logs_real_port(serve):
    server = serve("apps.basic:app")
    assert server.port and server.port != 0


def test_programmatic_run_and_config_server(tmp_path):
    script = tmp_path / "embed.py"
    script.write_text(
        "import asyncio, sys, httpx\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from fastserve import Config, Server\n"
        "from apps.basic import app\n"
        "async def main():\n"
        "    server = Server(Config(app=app, port=0, log_level='warning'))\n"
        "    task = asyncio.create_task(server.serve())\n"
        "    while not server.started: await asyncio.sleep(0.01)\n"
        "    port = server.bound_addresses[0][1]\n"
        "    async with httpx.AsyncClient() as c:\n"
        "        r = await c.get(f'http://127.0.0.1:{port}/')\n"
        "    server.request_exit(); await task\n"
        "    print('EMBEDDED', r.status_code, r.text)\n"
        "asyncio.run(main())\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert "EMBEDDED 200 Hello, world!" in result.stdout, result.stderr


def test_programmatic_run_function(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, threading, time, os, signal\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "import fastserve\n"
        "threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()\n"
        "sys.exit(fastserve.run('apps.basic:app', port=0, http='h11', loop='asyncio'))\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "running on" in result.stderr and "Finished server process" in result.stderr


def test_cli_command_is_generated_from_the_option_table():
    names = {p.name for p in cli_command.params}
    assert {f.name for f in option_fields()} <= names


def test_timeout_request_header_answers_408(serve, impl):
    import socket
    import time
    http, loop = impl
    server = serve("apps.basic:app", "--http", http, "--loop", loop, "--timeout-request-header", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for piece in (b"X-A: 1\r\n", b"X-B: 2\r\n"):  # trickling does not extend the deadline
            time.sleep(0.4)
            sock.sendall(piece)
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
        assert status_of(data) == 408 and 0.9 < time.monotonic() - started < 3
    assert httpx.get(server.url).status_code == 200


def test_timeout_request_body_answers_408(serve, impl):
    import socket
    import time
    http, loop = impl
    server = serve("apps.basic:app", "--http", http, "--loop", loop, "--timeout-request-body", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        started = time.monotonic()
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
        assert status_of(data) == 408 and 0.9 < time.monotonic() - started < 3
    server.wait_for_line("Request body timeout (408)")


def test_limit_connections_pauses_accepting(serve):
    import socket
    import time
    server = serve("apps.basic:app", "--limit-connections", "2")
    first = socket.create_connection(("127.0.0.1", server.port))
    second = socket.create_connection(("127.0.0.1", server.port))
    server.wait_for_line("Connection limit of 2 reached")
    results = []
    import threading
    waiter = threading.Thread(target=lambda: results.append(httpx.get(server.url, timeout=10).status_code))
    waiter.start()
    time.sleep(0.5)
    assert not results  # queued in the backlog, not served, not refused
    first.close()
    waiter.join(10)
    assert results == [200]
    second.close()
    server.wait_for_line("accepting connections")
