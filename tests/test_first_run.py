"""The first-run experience (coming from uvicorn): log lines, start-up mistakes, help, exit statuses.

Each test runs a real fastserve process and compares its log lines and exit status exactly.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trustme

from .helpers import ROOT, TESTS

LOOPS = ["asyncio", "uvloop"]


def fastserve(*args, env=None, timeout=20, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "fastserve", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd)


def python(code: str, timeout=30, cwd=TESTS):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def lines_with(output: str, level: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(level + ":")]


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    other = trustme.CA().issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    files = {name: folder / f"{name}.pem" for name in ("key", "cert", "other_key")}
    cert.private_key_pem.write_to_path(files["key"])
    cert.cert_chain_pems[0].write_to_path(files["cert"])
    other.private_key_pem.write_to_path(files["other_key"])
    return {name: str(path) for name, path in files.items()}


# -- start-up mistakes --------------------------------------------------------------------------
def test_zero_argument_factory_without_flag_serves_with_a_warning(serve):
    server = serve("apps.first_run:make_app")
    response = httpx.get(server.url)
    assert (response.status_code, response.text) == (200, "from the factory")
    assert lines_with(server.output, "WARNING") == [
        "WARNING:  APP apps.first_run:make_app takes no arguments: calling it as an application factory "
        "(pass --factory to say so and silence this warning)."
    ]


@pytest.mark.parametrize("app, error", [
    ("NOT_CALLABLE", "ERROR:    APP apps.first_run:NOT_CALLABLE is not an ASGI application: dict objects are not callable."),
    ("two_arguments", "ERROR:    APP apps.first_run:two_arguments is not an ASGI application: it cannot be called with (scope, receive, send)."),
])
def test_not_an_asgi_app_is_one_line_and_exit_3_before_serving(app, error):
    result = fastserve(f"apps.first_run:{app}", "--app-dir", str(TESTS), "--port", "0")
    assert result.returncode == 3
    assert lines_with(result.stderr, "ERROR") == [error]
    assert "Traceback" not in result.stderr and "running on" not in result.stderr
    assert "Waiting for application startup" not in result.stderr


def test_run_exits_nonzero_when_the_app_cannot_be_loaded():
    result = python('import fastserve; fastserve.run("nosuch:app")')
    assert result.returncode == 3, result.stderr
    assert lines_with(result.stderr, "ERROR") == ['ERROR:    Could not import module "nosuch".']


def test_run_returns_0_after_a_normal_shutdown():
    code = ("import fastserve, signal, threading, os\n"
            "threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
            "print('status', fastserve.run('apps.basic:app', port=0, loop='asyncio'))\n")
    result = python(code)
    assert result.returncode == 0 and "status 0" in result.stdout, result.stderr


def test_port_in_use_names_the_address_before_lifespan_startup():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = fastserve("apps.variants:lifespan_records", "--app-dir", str(TESTS), "--port", str(port))
    assert result.returncode == 1
    assert lines_with(result.stderr, "ERROR") == [
        f"ERROR:    Could not bind http://127.0.0.1:{port}: the address is already in use (another server?). "
        "Choose another port with --port (or make run PORT=...)."
    ]
    assert "Waiting for application startup" not in result.stderr


def test_tls_errors_name_the_file(tls_files, tmp_path):
    missing = str(tmp_path / "nope.pem")
    cases = [
        (["--ssl-certfile", missing], f"--ssl-certfile {missing!r}: no such file"),
        (["--ssl-certfile", tls_files["cert"], "--ssl-keyfile", missing], f"--ssl-keyfile {missing!r}: no such file"),
        (["--ssl-certfile", tls_files["key"], "--ssl-keyfile", tls_files["key"]], f"--ssl-certfile {tls_files['key']!r} holds no PEM certificate"),
        (["--ssl-certfile", tls_files["cert"], "--ssl-keyfile", tls_files["other_key"]],
         f"the private key in {tls_files['other_key']!r} does not match the certificate in {tls_files['cert']!r}"),
    ]
    for args, message in cases:
        result = fastserve("apps.basic:app", "--app-dir", str(TESTS), "--port", "0", *args)
        assert result.returncode == 1, result.stderr
        assert lines_with(result.stderr, "ERROR") == [f"ERROR:    TLS setup failed: {message}"]


def test_workers_without_main_guard_is_one_line(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nimport fastserve\n"
                      "fastserve.run('apps.basic:app', port=0, workers=2)\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    errors = lines_with(result.stderr, "ERROR")
    assert 'call it under `if __name__ == "__main__":`' in errors[0]
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) < 15, result.stderr


# -- log lines ----------------------------------------------------------------------------------
def test_startup_lines_say_what_runs(serve, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("FASTSERVE_TEST_VALUE=1\n")
    server = serve("apps.basic:app", "--loop", "asyncio", "--http", "h11", "--env-file", str(env_file))
    pid = server.proc.pid
    assert lines_with(server.output, "INFO")[:4] == [
        f"INFO:     Started server process [{pid}]",
        f"INFO:     Loading environment from '{env_file}'",
        "INFO:     Using event loop asyncio, HTTP parser h11, WebSocket websockets (auto)",
        "INFO:     Waiting for application startup.",
    ]
    assert server.output.splitlines()[-1] == f"INFO:     fastserve running on http://127.0.0.1:{server.port} (Press CTRL+C to quit)"


@pytest.mark.parametrize("loop", LOOPS)
def test_access_log_time_has_microseconds(serve, loop):
    server = serve("apps.first_run:sleepy", "--loop", loop, "--access-log-format", "ACCESS %(D)s %(M)s")
    for _ in range(3):
        assert httpx.get(server.url).text == "slept"
    wait_until(lambda: server.output.count("ACCESS ") == 3)
    times = [tuple(map(int, line.split()[2:4])) for line in server.output.splitlines() if line.startswith("INFO:     ACCESS ")]
    for micros, millis in times:
        assert 1000 <= micros < 1_000_000 and millis == micros // 1000, times
    # A millisecond clock (uvloop's cached loop.time()) would give whole thousands only.
    assert any(micros % 1000 for micros, _ in times), times


def _leave_a_stream_early(port: int, path: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while len(received) < 5000:
            received += sock.recv(65536)
        assert received.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("app, path", [("endless", "/"), ("starlette_streaming", "/stream")])
def test_client_leaving_a_stream_is_one_access_line_and_no_error(serve, app, path):
    factory = ["--factory"] if app == "starlette_streaming" else []
    server = serve(f"apps.first_run:{app}", *factory, "--loop", "asyncio", "--access-log-format", "ACCESS %(r)s %(s)s %(B)s")
    _leave_a_stream_early(server.port, path)
    line = server.wait_for_line("ACCESS ")
    assert re.fullmatch(rf"INFO:     ACCESS GET {path} HTTP/1.1 200 \d+", line), line
    assert int(line.split()[-1]) >= 5000
    time.sleep(0.3)  # the app's next send sees the disconnect
    assert server.stop() == 0
    assert lines_with(server.output, "ERROR") == []
    assert "Traceback" not in server.output
    assert len([ln for ln in server.output.splitlines() if f"ACCESS GET {path} " in ln]) == 1


def test_unix_socket_file_removed_at_shutdown(serve, tmp_path):
    path = tmp_path / "fastserve.sock"
    server = serve("apps.basic:app", "--uds", str(path), wait_for="running on unix socket")
    assert path.exists()
    assert server.stop() == 0
    assert not path.exists()


def test_graceful_wait_line_says_a_second_ctrl_c_forces(serve):
    server = serve("apps.first_run:endless", "--timeout-graceful-shutdown", "5")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(100)
        server.proc.send_signal(2)
        line = server.wait_for_line("Waiting for 1 connection")
        assert line == "INFO:     Waiting for 1 connection(s) to finish (at most 5.0s; press CTRL+C again to force the exit)"
        server.proc.send_signal(2)
        assert server.proc.wait(5) == 0


def _client_hello() -> bytes:
    import ssl

    context = ssl.create_default_context()
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="localhost")
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_tls_client_hello_on_the_plain_port_gets_a_hint(serve, http):
    from .helpers import raw_request

    server = serve("apps.basic:app", "--http", http, "--loop", "asyncio")
    response = raw_request(server.port, _client_hello())
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b"This looks like TLS: use http:// or start the server with --ssl-certfile" in response
    line = server.wait_for_line("Refused")
    assert line.startswith("INFO:     Refused a request from 127.0.0.1:")
    assert line.endswith(": This looks like TLS: use http:// or start the server with --ssl-certfile (400)")
    assert server.output.count("Refused") == 1 and "Traceback" not in server.output


def test_log_level_debug_shows_connections_and_refused_bytes(serve):
    from .helpers import raw_request

    server = serve("apps.basic:app", "--log-level", "debug", "--loop", "asyncio")
    assert httpx.get(server.url).status_code == 200
    raw_request(server.port, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: server.output.count("Connection closed: 127.0.0.1:") == 2)
    assert server.output.count("DEBUG:    Connection opened: 127.0.0.1:") == 2
    line = server.wait_for_line("DEBUG:    Refusing")
    assert re.fullmatch(r"DEBUG:    Refusing 127\.0\.0\.1:\d+ with 400 \(Invalid or unsupported HTTP method\); "
                        r"the bytes read last: b'BREW /pot HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'", line), line
    assert "TRACE" not in server.output


def test_log_level_trace_shows_asgi_messages_without_bodies(serve):
    server = serve("apps.basic:app", "--log-level", "trace", "--loop", "asyncio")
    httpx.post(server.url + "/echo", content=b"secret-body")
    wait_until(lambda: "ASGI [http /echo] returned" in server.output)
    traced = [line for line in server.output.splitlines() if "ASGI [http /echo]" in line]
    assert traced[0].startswith("TRACE:    ASGI [http /echo] call (")
    assert "TRACE:    ASGI [http /echo] receive http.request body=11 bytes more_body=False" in traced
    assert any(line.startswith("TRACE:    ASGI [http /echo] send http.response.start status=200") for line in traced)
    assert "secret-body" not in server.output


def test_workers_lines_carry_the_worker_pid(supervised):
    server = supervised("apps.basic:app", "--workers", "2", "--loop", "asyncio")
    wait_until(lambda: server.output.count("running on") == 2, 20)
    running = [line for line in server.output.splitlines() if "running on" in line]
    pids = {int(re.match(r"INFO:     \[(\d+)\] fastserve running on http://127\.0\.0\.1:\d+ \(Press CTRL\+C to quit\)$", line).group(1))
            for line in running}
    assert len(pids) == 2
    for pid in pids:
        assert f"INFO:     [{pid}] Started server process [{pid}]" in server.output


def test_gunicorn_worker_does_not_say_press_ctrl_c(supervised):
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    command = [gunicorn, "-k", "fastserve.workers.Worker", "--no-control-socket", "--chdir", str(TESTS / "apps"),
               "-b", "127.0.0.1:0", "basic:app"]
    server = supervised("basic:app", command=command)
    line = server.wait_for_line("running on")
    assert re.search(r"\[INFO\] fastserve running on http://127\.0\.0\.1:\d+$", line), line
    assert "Press CTRL+C" not in server.output


# -- help, options, migration -------------------------------------------------------------------
def test_help_shows_groups_with_reload_and_workers_near_the_top():
    result = fastserve("--help")
    assert result.returncode == 0
    text = result.stdout
    titles = ["Address:", "Development (--reload):", "Processes (--workers):", "Application:", "Logging:",
              "Implementation:", "HTTP:", "WebSocket:", "TLS:"]
    positions = [text.index("\n" + title + "\n") for title in titles]
    assert positions == sorted(positions)
    assert text.index("--reload ") < text.index("--workers ") < text.index("--loop ")
    epilog = " ".join(text.split())
    assert "FASTSERVE_HEADERS, FASTSERVE_RELOAD_DIRS, FASTSERVE_RELOAD_INCLUDES, FASTSERVE_RELOAD_EXCLUDES" in epilog


def test_version_shows_python_and_platform():
    import platform

    result = fastserve("--version")
    assert result.returncode == 0
    import fastserve as package
    from fastserve.compiled import build_kind

    assert result.stdout == (f"fastserve {package.__version__} ({build_kind()}) with {platform.python_implementation()} "
                             f"{platform.python_version()} on {platform.system()}\n")


@pytest.mark.parametrize("variable", ["FASTSERVE_HEADERS", "FASTSERVE_HEADER"])
def test_header_environment_variable_plural_and_singular(serve, variable):
    server = serve("apps.basic:app", env={variable: "X-Team: core one\nx-other:two"})
    response = httpx.get(server.url)
    assert response.headers["x-team"] == "core one" and response.headers["x-other"] == "two"


@pytest.mark.parametrize("env, message", [
    ({"FASTSERVE_PORT": "abc"}, "Error: --port: 'abc' is not a valid integer (from the environment variable FASTSERVE_PORT)."),
    ({"FASTSERVE_LIMIT_REQUEST_LINE": "0"}, "Error: --limit-request-line: must be positive; got 0 (from the environment variable FASTSERVE_LIMIT_REQUEST_LINE)"),
    ({"FASTSERVE_HEADER": "no-colon"}, "Error: --header: must look like NAME:VALUE; got 'no-colon' (from the environment variable FASTSERVE_HEADER)"),
])
def test_invalid_environment_value_names_the_variable(env, message):
    result = fastserve("apps.basic:app", "--app-dir", str(TESTS), env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == message


@pytest.mark.parametrize("args, message", [
    (["--port", "x"], "Error: --port: 'x' is not a valid integer."),
    (["--limit-request-line", "0"], "Error: --limit-request-line: must be positive; got 0"),
    (["--workers", "0"], "Error: --workers: must be at least 1; got 0"),
    (["--http", "nope"], "Error: --http: 'nope' is not one of 'auto', 'httptools', 'h11'."),
    (["--ssl-version", "2"], "Error: --ssl-version is a uvicorn option fastserve does not have: fastserve uses "
                             "Python's TLS defaults (TLS 1.2 and later); limit ciphers with --ssl-ciphers."),
    (["--ws", "wsproto"], "Error: --ws: 'wsproto' is uvicorn's; fastserve's WebSocket engine is websockets: "
                          "use --ws websockets (or auto)."),
    (["--proxy-headers", "maybe"], None),
])
def test_option_errors_share_one_style(args, message):
    result = fastserve("apps.basic:app", "--app-dir", str(TESTS), *args)
    assert result.returncode == 2
    if message is not None:
        assert result.stderr.splitlines()[-1] == message
    assert "Traceback" not in result.stderr


def _offers_deflate(port: int) -> bool:
    from .helpers import raw_request

    response = raw_request(port, b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                                 b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", timeout=1)
    assert response.startswith(b"HTTP/1.1 101 "), response
    return b"permessage-deflate" in response.lower()


@pytest.mark.parametrize("args, deflate", [
    (["--ws-per-message-deflate", "false"], False),
    (["--ws-per-message-deflate=False"], False),
    (["--ws-per-message-deflate", "true"], True),
    (["--no-ws-per-message-deflate"], False),
])
def test_uvicorn_boolean_values(serve, args, deflate):
    server = serve("apps.ws:app", *args)
    assert _offers_deflate(server.port) is deflate


def test_use_colors_switches(serve):
    coloured = serve("apps.basic:app", "--use-colors")
    plain = serve("apps.basic:app", "--no-use-colors")
    assert "\x1b[32mINFO\x1b[0m:" in coloured.output
    assert "\x1b[" not in plain.output


def test_ws_websockets_sansio_is_websockets(serve):
    server = serve("apps.ws:app", "--ws", "websockets-sansio", "--loop", "asyncio")
    assert "WebSocket websockets" in server.output
    assert _offers_deflate(server.port) is True


def _open_websocket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
    return sock


def test_websocket_app_error_wrapping_the_disconnect_is_not_an_error(serve):
    server = serve("apps.first_run:websocket_wraps_disconnect", "--loop", "asyncio")
    sock = _open_websocket(server.port)
    sock.recv(1000)
    sock.close()  # no close frame: the connection is simply gone
    time.sleep(0.5)  # the app's next send raises, and it re-raises its own error
    assert server.stop() == 0
    assert lines_with(server.output, "ERROR") == [] and "Traceback" not in server.output


def test_websocket_real_app_error_is_still_an_error(serve):
    server = serve("apps.first_run:websocket_fails", "--loop", "asyncio")
    with _open_websocket(server.port):
        server.wait_for_line("ValueError: a real bug")
    assert lines_with(server.output, "ERROR") == ["ERROR:    Exception in ASGI application"]


def test_shutdown_cutting_a_response_still_logs_it(serve):
    server = serve("apps.first_run:endless", "--timeout-graceful-shutdown", "0.5",
                   "--access-log-format", "ACCESS %(r)s %(s)s")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(100)
        assert server.stop() == 0
    assert [line for line in server.output.splitlines() if "ACCESS" in line] == ["INFO:     ACCESS GET /cut HTTP/1.1 200"]
    assert lines_with(server.output, "ERROR") == []


def test_gunicorn_worker_access_time_has_microseconds(supervised):
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    command = [gunicorn, "-k", "fastserve.workers.Worker", "--no-control-socket", "--chdir", str(TESTS / "apps"),
               "-b", "127.0.0.1:0", "--access-logfile", "-", "--access-logformat", "ACCESS %(D)s", "first_run:sleepy"]
    server = supervised("first_run:sleepy", command=command)
    port = int(re.search(r"running on http://127\.0\.0\.1:(\d+)", server.wait_for_line("running on")).group(1))
    for _ in range(3):
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "slept"
    wait_until(lambda: server.output.count("ACCESS ") == 3)
    micros = [int(line.split("ACCESS ")[1]) for line in server.output.splitlines() if "ACCESS " in line]
    assert all(1000 <= m < 1_000_000 for m in micros) and any(m % 1000 for m in micros), micros
