"""Real frameworks on fastserve: a Django project made by startproject, Starlette and FastAPI."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
import pytest

from .helpers import ServerProcess


@pytest.fixture(scope="module")
def django_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("django")
    subprocess.run([sys.executable, "-m", "django", "startproject", "newtest"], cwd=root, check=True)
    project = root / "newtest"
    settings = project / "newtest" / "settings.py"
    # DEBUG=True shows the rocket page at /; migrate so the admin login works.
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=project, check=True)
    assert "DEBUG = True" in settings.read_text()
    return project


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_django_startproject_start_page_and_admin(django_project, http):
    server = ServerProcess("newtest.asgi:application", "--http", http, cwd=django_project, app_dir=None).start()
    try:
        home = httpx.get(server.url + "/")
        assert home.status_code == 200
        assert "The install worked successfully" in home.text
        login = httpx.get(server.url + "/admin/", follow_redirects=True)
        assert login.status_code == 200 and "Django administration" in login.text
        assert 'name="csrfmiddlewaretoken"' in login.text
        # Logging in exercises a form POST with a CSRF cookie through fastserve.
        with httpx.Client(base_url=server.url, follow_redirects=False) as client:
            page = client.get("/admin/login/")
            token = page.text.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
            r = client.post("/admin/login/", data={"csrfmiddlewaretoken": token, "username": "x", "password": "y"},
                            headers={"referer": server.url + "/admin/login/"})
            assert r.status_code == 200 and "Please enter the correct username and password" in r.text
        server.wait_for_line("appears unsupported")  # Django's plain app raises on lifespan: auto carries on
    finally:
        assert server.stop() == 0


STARLETTE_APP = textwrap.dedent('''
    import asyncio
    from contextlib import asynccontextmanager
    from fastapi import FastAPI, UploadFile
    from fastapi.responses import StreamingResponse

    @asynccontextmanager
    async def lifespan(app):
        yield {"db": "connected"}

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None):
        return {"item_id": item_id, "q": q}

    @app.get("/state")
    async def state(request: __import__("starlette.requests").requests.Request):
        return {"db": request.state.db}

    @app.get("/stream")
    async def stream():
        async def numbers():
            for i in range(5):
                yield f"{i}\\n"
                await asyncio.sleep(0.01)
        return StreamingResponse(numbers(), media_type="text/plain")

    @app.post("/upload")
    async def upload(file: UploadFile):
        data = await file.read()
        return {"name": file.filename, "size": len(data), "head": data[:5].decode()}
''')


@pytest.fixture(scope="module")
def fastapi_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fastapi")
    (folder / "fapp.py").write_text(STARLETTE_APP)
    return folder


def test_fastapi_json_stream_upload_and_lifespan_state(fastapi_dir, impl):
    http, loop = impl
    server = ServerProcess("fapp:app", "--http", http, "--loop", loop, app_dir=fastapi_dir).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/items/3?q=x").json() == {"item_id": 3, "q": "x"}
            assert client.get("/items/nope").status_code == 422
            assert client.get("/state").json() == {"db": "connected"}
            with client.stream("GET", "/stream") as r:
                assert r.headers["transfer-encoding"] == "chunked"
                assert "".join(r.iter_text()) == "0\n1\n2\n3\n4\n"
            payload = b"hello" + b"\0" * 3_000_000
            r = client.post("/upload", files={"file": ("big.bin", payload)})
            assert r.json() == {"name": "big.bin", "size": len(payload), "head": "hello"}
    finally:
        assert server.stop() == 0


# -- over HTTP/2 (cleartext prior knowledge; TLS ALPN for the browser) ---------------------------
def _h2_codecs() -> list[str]:
    from .h2_client import codecs

    return ["zttp" if c.__name__ == "ZttpCodec" else "h2" for c in codecs()]


@pytest.mark.parametrize("codec", _h2_codecs())
def test_django_over_http2(django_project, codec):
    server = ServerProcess("newtest.asgi:application", "--http2-codec", codec, cwd=django_project, app_dir=None).start()
    try:
        with httpx.Client(base_url=server.url, http1=False, http2=True, follow_redirects=False) as client:
            home = client.get("/")
            assert home.http_version == "HTTP/2" and "The install worked successfully" in home.text
            page = client.get("/admin/login/")
            token = page.text.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
            r = client.post("/admin/login/", data={"csrfmiddlewaretoken": token, "username": "x", "password": "y"},
                            headers={"referer": server.url + "/admin/login/"})
            assert r.status_code == 200 and "Please enter the correct username and password" in r.text
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("codec", _h2_codecs())
def test_fastapi_over_http2(fastapi_dir, codec):
    server = ServerProcess("fapp:app", "--http2-codec", codec, app_dir=fastapi_dir).start()
    try:
        with httpx.Client(base_url=server.url, http1=False, http2=True) as client:
            r = client.get("/items/3?q=x")
            assert r.http_version == "HTTP/2" and r.json() == {"item_id": 3, "q": "x"}
            assert client.get("/state").json() == {"db": "connected"}
            with client.stream("GET", "/stream") as r:
                assert "transfer-encoding" not in r.headers  # HTTP/2 frames the body itself
                assert "".join(r.iter_text()) == "0\n1\n2\n3\n4\n"
            payload = b"hello" + b"\0" * 3_000_000
            r = client.post("/upload", files={"file": ("big.bin", payload)})
            assert r.json() == {"name": "big.bin", "size": len(payload), "head": "hello"}
    finally:
        assert server.stop() == 0


def test_chromium_page_over_https_uses_http2(django_project, tmp_path):
    import shutil

    import trustme

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed: run `make system-deps` - HTTP/2 from a browser NOT TESTED")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    server = ServerProcess("newtest.asgi:application", "--ssl-keyfile", str(tmp_path / "key.pem"),
                           "--ssl-certfile", str(tmp_path / "cert.pem"), cwd=django_project, app_dir=None).start()
    try:
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"https://127.0.0.1:{server.port}/"],
            capture_output=True, timeout=60,
        )
        assert b"The install worked successfully" in result.stdout, result.stderr[-2000:]
        server.wait_for_line('"GET / HTTP/2" 200')
    finally:
        assert server.stop() == 0
