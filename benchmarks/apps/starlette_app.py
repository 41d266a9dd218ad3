"""A Starlette app with one JSON endpoint (GET /json): the framework's routing and response classes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def json_endpoint(request):
    return JSONResponse({"message": "Hello, world!", "path": request.url.path})


app = Starlette(routes=[Route("/json", json_endpoint)])
