"""Django's FileResponse through fastserve.django.handler: sent by the server with pathsend (or
zerocopysend) when the scope offers it, as Django sends it otherwise.

End to end, strace shows the file going out with sendfile with the handler, and through Python
(no sendfile) with Django's own; in a subprocess (Django configured there, not in pytest's process),
the handler picks the message for each kind of file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import httpx
import pytest

from .helpers import TESTS

pytest.importorskip("django")

APPS = TESTS / "apps"
STRACE = shutil.which("strace")
TWO_IMPLS = pytest.mark.two_impls


def serve_traced(serve, app: str, impl, trace) -> object:
    http, loop = impl
    command = [STRACE, "-f", "-qq", "-e", "trace=sendfile", "-e", "signal=none", "-o", str(trace),
               sys.executable, "-m", "fastserve", app, "--app-dir", str(APPS), "--port", "0",
               "--http", http, "--loop", loop]
    return serve(app, command=command)


def sendfile_bytes(trace) -> int:
    lines = [line for line in trace.read_text().splitlines() if "sendfile" in line]
    return sum(int(m.group(1)) for m in (re.search(r"= (\d+)$", line) for line in lines) if m)


@TWO_IMPLS
@pytest.mark.parametrize("handler", ["fastserve", "django"])
def test_file_response_goes_out_with_sendfile_only_with_the_handler(serve, impl, tmp_path, handler):
    if STRACE is None:
        pytest.skip("SKIPPED LOUDLY: strace is not installed (make system-deps installs it): "
                    "cannot tell whether the file went out with sendfile")
    data = os.urandom(2 * 1024 * 1024 + 3)
    path = tmp_path / "report.bin"
    path.write_bytes(data)
    trace = tmp_path / "trace.txt"
    app = "plaindjango.asgi_fastserve:application" if handler == "fastserve" else "plaindjango.asgi:application"
    server = serve_traced(serve, app, impl, trace)
    response = httpx.get(f"{server.url}/file", params={"path": str(path)}, timeout=10)
    head = httpx.head(f"{server.url}/file", params={"path": str(path)}, timeout=10)
    os.killpg(server.proc.pid, signal.SIGINT)  # strace and the server alike
    server.stop()
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-disposition"] == 'attachment; filename="report.bin"'
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
    assert sendfile_bytes(trace) == (len(data) if handler == "fastserve" else 0)
    assert "Traceback" not in server.output, server.output


CHOICES = r'''
import asyncio, io, json, os, sys
import django
from django.conf import settings
settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="x", INSTALLED_APPS=[])
django.setup()
from django.http import FileResponse
from django.urls import path
from fastserve.django.handler import ASGIHandler, PATHSEND, ZEROCOPYSEND, file_message

folder = sys.argv[1]
os.chdir(folder)
with open("data.bin", "wb") as f:
    f.write(b"0123456789" * 10)


def opened(name, skip=0):
    f = open(name, "rb")
    f.read(skip)
    return f


def view(request):
    return FileResponse(opened(os.path.join(folder, "data.bin")))


urlpatterns = [path("file", view)]
both = frozenset((PATHSEND, ZEROCOPYSEND))


def describe(message):
    if message is None:
        return None
    return {k: (v if k != "file" else "file") for k, v in message.items()}


results = {
    "absolute": describe(file_message(FileResponse(opened(os.path.join(folder, "data.bin"))), both)),
    "relative": describe(file_message(FileResponse(opened("data.bin")), both)),
    "offset": describe(file_message(FileResponse(opened("data.bin", 30)), both)),
    "zerocopy_only": describe(file_message(FileResponse(opened("data.bin")), frozenset((ZEROCOPYSEND,)))),
    "bytesio": describe(file_message(FileResponse(io.BytesIO(b"abc")), both)),
}
moved = FileResponse(opened("data.bin"))
os.rename("data.bin", "elsewhere.bin")
results["replaced"] = describe(file_message(moved, both))
os.rename("elsewhere.bin", "data.bin")


async def call(extensions):
    sent = []
    scope = {"type": "http", "method": "GET", "path": "/file", "raw_path": b"/file", "query_string": b"",
             "headers": [(b"host", b"x")], "root_path": "", "scheme": "http", "server": ("x", 80),
             "client": ("y", 1), "asgi": {"version": "3.0", "spec_version": "2.4"}}
    if extensions is not None:
        scope["extensions"] = extensions
    inbox = [{"type": "http.request", "body": b""}]

    async def receive():
        if inbox:
            return inbox.pop()
        await asyncio.Event().wait()

    async def send(message):
        sent.append({k: v for k, v in message.items() if k != "headers"})

    await ASGIHandler()(scope, receive, send)
    return sent


results["served_with_pathsend"] = asyncio.run(call({PATHSEND: {}, ZEROCOPYSEND: {}}))
results["served_without"] = [
    {k: (len(v) if k == "body" else v) for k, v in m.items()} for m in asyncio.run(call(None))
]
print(json.dumps(results))
'''


def test_handler_picks_the_message_for_each_kind_of_file(tmp_path):
    script = tmp_path / "choices.py"
    script.write_text(CHOICES)
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DJANGO_SETTINGS_MODULE": ""})
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    data = str(tmp_path / "data.bin")
    zerocopy = {"type": "http.response.zerocopysend", "file": "file", "offset": 0, "count": 100}
    assert got["absolute"] == {"type": "http.response.pathsend", "path": data}
    assert got["relative"] == {"type": "http.response.pathsend", "path": data}  # the name still names it
    assert got["offset"] == {**zerocopy, "offset": 30, "count": 70}
    assert got["zerocopy_only"] == zerocopy
    assert got["replaced"] == zerocopy  # the name no longer names the open file
    assert got["bytesio"] is None  # no descriptor: Django sends it
    assert got["served_with_pathsend"] == [
        {"type": "http.response.start", "status": 200},
        {"type": "http.response.pathsend", "path": data},
    ]
    assert got["served_without"] == [  # unchanged without the extensions: Django's body messages
        {"type": "http.response.start", "status": 200},
        {"type": "http.response.body", "body": 100, "more_body": True},
        {"type": "http.response.body"},
    ]


@TWO_IMPLS
def test_100_mib_file_response_keeps_memory_bounded_with_the_handler(serve, impl, tmp_path):
    """A Django download of 100 MiB to a client reading slowly: the server does not hold it (the
    handler hands the path to the server, which sends it from the page cache)."""
    from .test_files import (
        MIB,
        content_length,
        make_file,
        read_body_slowly,
        read_head,
        rss_kib,
        small_buffer_socket,
    )

    http, loop = impl
    size = 100 * MIB  # sparse: quick to make, only the markers are data
    path = tmp_path / "big.bin"
    markers = make_file(path, size)
    server = serve("plaindjango.asgi_fastserve:application", "--app-dir", str(APPS), "--http", http, "--loop", loop)
    pid = server.proc.pid
    small = tmp_path / "small.bin"
    small.write_bytes(b"warm")
    assert httpx.get(f"{server.url}/file", params={"path": str(small)}, timeout=10).content == b"warm"  # imports
    before = rss_kib(pid)
    with small_buffer_socket(server.port) as sock:
        sock.sendall(f"GET /file?path={path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, first = read_head(sock)
        assert content_length(head) == size
        body, peak = read_body_slowly(sock, first, size, pid, slow_until=4 * MIB)
    for offset, marker in markers.items():
        assert body[offset : offset + len(marker)] == marker
    assert peak - before < 20 * 1024, f"server RSS grew by {peak - before} KiB while sending a 100 MiB file"
