"""The request record: one parsed, validated request head, in no wire format.

HTTP/1.1 semantics (http1/semantics.py) build it from a parser's callbacks; an HTTP/2 stream
would build it from pseudo-header fields. The scope (asgi/scope.py) and the cycle read it.
"""

from __future__ import annotations

from typing import Any

# body_left for a request body of unknown length (chunked in HTTP/1.1; DATA frames in HTTP/2).
UNKNOWN_LENGTH = -1


class RequestHead:
    """A request head that passed the wire format's rules.

    Made empty (``RequestHead()``, or a subclass) and filled slot by slot by the wire format's
    rules: no __init__, so making one is a bare allocation (a Python __init__ with a dozen
    arguments costs ~1,000 instructions more per request on CPython 3.11; callgrind, hello GET).

    method: the method as str (from the known-methods table: no decode per request);
    raw_path / path / query_string: the target split (path percent-decoded);
    headers: the raw header pairs, names lower-cased, as the scope hands them to the app;
    http_version: "1.0", "1.1", "2";
    expect_100: the client waits for 100 Continue before sending its body;
    is_head: a HEAD request (a response body is never sent);
    body_left: request body bytes to come (0: none; UNKNOWN_LENGTH: until the end is framed);
    client, scheme: the peer and scheme (the connection's, or what trusted proxy headers say);
    upgrade: the client asks to switch to WebSocket (True; HTTP/1.1 Upgrade; later RFC 8441's
        CONNECT) or to HTTP/2 ("h2c", HTTP/1.1 Upgrade), or not (False);
    forwarded: proxy headers from a trusted peer, by name (None without any), for http/proxy.py.
    Whether the connection carries another request after this one is the wire format's own rule
    (HTTP/1.1: http1.semantics.H1Head and the connection's H1Cycle carry ``keep_alive``).
    """

    __slots__ = (
        "method",
        "raw_path",
        "path",
        "query_string",
        "headers",
        "http_version",
        "expect_100",
        "is_head",
        "body_left",
        "client",
        "scheme",
        "upgrade",
        "forwarded",
    )
    method: str
    raw_path: bytes
    path: str
    query_string: bytes
    headers: Any
    http_version: str
    expect_100: bool
    is_head: bool
    body_left: int
    client: tuple[str, int] | None
    scheme: str
    upgrade: bool | str
    forwarded: dict[bytes, bytes] | None

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} {self.raw_path!r} HTTP/{self.http_version}>"
