"""Django's ASGI handler, with a FileResponse for a real file sent by the server.

Django under ASGI reads a ``FileResponse`` into Python and sends it in 64 KiB body messages. This
handler sends it with the ``http.response.pathsend`` ASGI extension instead when the server offers
it (fastserve does on HTTP/1.1: the kernel copies the file with sendfile on a plain socket), or with
``http.response.zerocopysend`` (the open file itself) when pathsend would not send the same bytes: a
file opened under a relative name that no longer names it, or read from an offset. Anything else
(no such extension, a file-like object without a descriptor, a response whose content a middleware
replaced, e.g. GZip) goes out exactly as Django sends it.

The one-line change in a project's ``asgi.py``::

    from fastserve.django.handler import get_asgi_application   # was: from django.core.asgi import ...

``fastserve.django``'s runserver and live-server test cases use it for projects without
``ASGI_APPLICATION`` (see application.py).
"""

from __future__ import annotations

import os
import stat
from contextvars import ContextVar
from typing import Any

import django
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.http import FileResponse

PATHSEND = "http.response.pathsend"
ZEROCOPYSEND = "http.response.zerocopysend"
_NONE: frozenset[str] = frozenset()
# The file extensions the current request's scope offers (send_response does not get the scope).
_offered: ContextVar[frozenset[str]] = ContextVar("fastserve_django_file_extensions", default=_NONE)


def get_asgi_application() -> ASGIHandler:
    """As ``django.core.asgi.get_asgi_application``, with this handler."""
    django.setup(set_prefix=False)
    return ASGIHandler()


class ASGIHandler(DjangoASGIHandler):
    """Django's ASGI handler; a FileResponse for a real file goes out through the server (above)."""

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        extensions = scope.get("extensions") or {}
        offered = frozenset(name for name in (PATHSEND, ZEROCOPYSEND) if name in extensions) or _NONE
        token = _offered.set(offered)
        try:
            await super().handle(scope, receive, send)
        finally:
            _offered.reset(token)

    async def send_response(self, response: Any, send: Any) -> None:
        offered = _offered.get()
        message = file_message(response, offered) if offered and isinstance(response, FileResponse) else None
        if message is None:
            await super().send_response(response, send)
            return
        await send({"type": "http.response.start", "status": response.status_code, "headers": _headers(response)})
        await send(message)  # Django closes the file afterwards (response.close())


def file_message(response: Any, offered: frozenset[str]) -> dict[str, Any] | None:
    """The pathsend or zerocopysend message that sends this FileResponse's file, if one can."""
    file = response.file_to_stream
    if file is None:
        return None
    try:
        fd = file.fileno()
        info = os.fstat(fd)
        position = file.tell()
    except (AttributeError, OSError, ValueError):  # no descriptor (BytesIO), closed, not seekable
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    length = info.st_size - position
    declared = response.get("Content-Length")
    if declared is not None and declared != str(length):
        return None  # the view set its own length: Django sends what it reads
    name = getattr(file, "name", None)
    if PATHSEND in offered and position == 0 and isinstance(name, str) and _names(name, info):
        return {"type": PATHSEND, "path": os.path.abspath(name)}
    if ZEROCOPYSEND in offered:
        return {"type": ZEROCOPYSEND, "file": file, "offset": position, "count": length}
    return None


def _names(name: str, info: os.stat_result) -> bool:
    """Whether ``name`` still names the open file (not replaced, moved or deleted since)."""
    try:
        now = os.stat(os.path.abspath(name))
    except (OSError, ValueError):
        return False
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


def _headers(response: Any) -> list[tuple[bytes, bytes]]:
    """The response's header fields and cookies as ASGI header pairs (as Django's handler makes them)."""
    headers = [
        (name.encode("ascii") if isinstance(name, str) else bytes(name),
         value.encode("latin-1") if isinstance(value, str) else bytes(value))
        for name, value in response.items()
    ]
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return headers
