"""The ASGI HTTP scope, from a RequestHead and what does not change on one connection.

A connection builds its template once (``connection_template``); each request copies it and
sets its own keys (``http_scope``). Copying a dict that already holds every key costs ~750
instructions, a dict literal ~1,070 (callgrind, hello GET): the template holds the per-request
keys too, so the copy needs no resize.
"""

from __future__ import annotations

from typing import Any

from .contracts import EARLY_HINT, PATHSEND, TRAILERS, ZEROCOPYSEND
from .request import RequestHead

# The ASGI extension each sink capability (asgi/contracts.py) makes possible.
_EXTENSION_NAMES = {
    TRAILERS: "http.response.trailers",
    EARLY_HINT: "http.response.early_hint",
    PATHSEND: "http.response.pathsend",
    ZEROCOPYSEND: "http.response.zerocopysend",
}


def offered_extensions(capabilities: frozenset[str]) -> dict[str, dict[str, Any]]:
    """scope["extensions"] as a connection whose sink has ``capabilities`` offers them (less tls)."""
    return {_EXTENSION_NAMES[name]: {} for name in sorted(capabilities) if name in _EXTENSION_NAMES}


def connection_template(
    server: tuple[str, int] | None,
    client: tuple[str, int] | None,
    scheme: str,
    root_path: str,
    extensions: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The scope keys that do not change between requests on one connection (a PROXY protocol
    header may still set client, server and scheme before the first request). ``extensions``:
    what the connection offers (offered_extensions), copied into each request's scope."""
    return {
        "type": "http",
        "asgi": None,  # per request, below
        "http_version": "1.1",
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": "GET",
        "root_path": root_path,
        "path": "",
        "raw_path": b"",
        "query_string": b"",
        "headers": (),
        "extensions": extensions or {},
    }


def http_scope(head: RequestHead, template: dict[str, Any], state: Any, tls: Any) -> dict[str, Any]:
    """The scope of one request. ``state``: the ServerState (asgi_info, app_state, copied per
    request: what one app writes there is not the next one's); ``tls``: the connection's TLS
    extension, or None."""
    scope = template.copy()
    scope["asgi"] = state.asgi_info.copy()
    scope["http_version"] = head.http_version
    scope["method"] = head.method
    scope["path"] = head.path
    scope["raw_path"] = head.raw_path
    scope["query_string"] = head.query_string
    scope["headers"] = head.headers
    scope["state"] = state.app_state.copy()
    if head.forwarded is not None:  # the client and scheme the trusted proxy headers name
        scope["client"] = head.client
        scope["scheme"] = head.scheme
    extensions = scope["extensions"].copy()  # per request: apps may add to it
    if tls is not None:
        extensions["tls"] = tls
    scope["extensions"] = extensions
    return scope
