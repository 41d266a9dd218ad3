"""The ASGI HTTP scope, from a RequestHead and what does not change on one connection.

A connection builds its template once (``connection_template``); each request copies it and
sets its own keys (``http_scope``). Copying a dict that already holds every key costs ~750
instructions, a dict literal ~1,070 (callgrind, hello GET): the template holds the per-request
keys too, so the copy needs no resize.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .contracts import EARLY_HINT, PATHSEND, TRAILERS, ZEROCOPYSEND
from .request import RequestHead

# The ASGI extension a sink capability offers in the scope (asgiref docs/extensions.rst).
_EXTENSION_NAMES = {
    PATHSEND: "http.response.pathsend",
    ZEROCOPYSEND: "http.response.zerocopysend",
    TRAILERS: "http.response.trailers",
    EARLY_HINT: "http.response.early_hint",
}


def connection_template(
    server: tuple[str, int] | None, client: tuple[str, int] | None, scheme: str, root_path: str
) -> dict[str, Any]:
    """The scope keys that do not change between requests on one connection (a PROXY protocol
    header may still set client, server and scheme before the first request). A copy of one
    made once per root_path: ~2k instructions less per connection than a dict literal."""
    base = _TEMPLATES.get(root_path)
    if base is None:
        base = _TEMPLATES[root_path] = _template(root_path)
    template = base.copy()
    template["server"] = server
    template["client"] = client
    template["scheme"] = scheme
    return template


_TEMPLATES: dict[str, dict[str, Any]] = {}  # by --root-path (never client input): one entry per server


def _template(root_path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": None,  # per request, below
        "http_version": "1.1",
        "server": None,
        "client": None,
        "scheme": "http",
        "method": "GET",
        "root_path": root_path,
        "path": "",
        "raw_path": b"",
        "query_string": b"",
        "headers": (),
    }


@lru_cache(maxsize=16)
def offered_extensions(capabilities: frozenset[str]) -> dict[str, Any]:
    """The scope's "extensions" a sink with these capabilities offers (shared: never written to;
    ``http_scope`` copies it for each request)."""
    return {_EXTENSION_NAMES[name]: {} for name in sorted(capabilities) if name in _EXTENSION_NAMES}


def http_scope(head: RequestHead, template: dict[str, Any], state: Any, tls: Any,
               extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scope of one request. ``state``: the ServerState (asgi_info, app_state, copied per
    request: what one app writes there is not the next one's); ``tls``: the connection's TLS
    extension, or None; ``extensions``: what the connection's sink offers (offered_extensions),
    copied likewise."""
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
    if tls is not None:
        scope["extensions"] = {"tls": tls, **extensions} if extensions else {"tls": tls}  # per request: apps may add to it
    else:  # always present (frameworks look there for what they may send), never shared
        scope["extensions"] = extensions.copy() if extensions else {}
    return scope


def scope_address(value: Any) -> tuple[str, int] | None:
    """A socket address as the scope's "server" and "client" hold it: (host, port), or None for a
    UNIX socket (whose address is a path or empty)."""
    if type(value) is tuple and len(value) == 2:
        return value  # IPv4, as every event loop gives it: (str, int) already
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


def peer_name(client: tuple[str, int] | None) -> str:
    """The client as a log line names it."""
    return f"{client[0]}:{client[1]}" if client else "a unix socket peer"
