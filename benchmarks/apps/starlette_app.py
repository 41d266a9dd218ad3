"""A Starlette app: one JSON endpoint (GET /json), the framework's routing and response classes; and
static files through FileResponse (GET /file/1m, /file/10m), which sends http.response.pathsend
when the server offers it (fastserve, granian) and reads the file into body messages otherwise."""

from __future__ import annotations

import os
import tempfile

from starlette.applications import Starlette
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

FILE_SIZES = {"1m": 1024 * 1024, "10m": 10 * 1024 * 1024}


def _static_file(size: int) -> str:
    """A file of ``size`` bytes in the temp folder, made once and shared by workers and servers."""
    path = os.path.join(tempfile.gettempdir(), f"fastserve-bench-{size}.bin")
    if not os.path.exists(path) or os.path.getsize(path) != size:
        partial = f"{path}.{os.getpid()}"
        with open(partial, "wb") as f:
            f.write(bytes(range(256)) * (size // 256))
        os.replace(partial, path)
    return path


FILES = {name: _static_file(size) for name, size in FILE_SIZES.items()}


async def json_endpoint(request):
    return JSONResponse({"message": "Hello, world!", "path": request.url.path})


async def file_endpoint(request):
    return FileResponse(FILES[request.path_params["size"]], media_type="application/octet-stream")


app = Starlette(routes=[Route("/json", json_endpoint), Route("/file/{size}", file_endpoint)])
