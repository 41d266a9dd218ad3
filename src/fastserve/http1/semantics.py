"""HTTP/1.1 request rules (RFC 9112): a parsed request head -> an H1Head, or BadRequest.

Pure functions: no connection, no transport. Both parser adapters (httptools, h11) report the
same four values and are held to the same rules here, so they cannot drift apart. The rules are
written out in one function on purpose: this runs once per request on the hot path, and each
helper call would cost more than the rule it holds (callgrind, hello GET).
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import unquote

from ..asgi.request import UNKNOWN_LENGTH, RequestHead
from .errors import HTTP2_PREFACE_HINT, UNSUPPORTED_METHOD, BadRequest

# The methods llhttp (httptools) accepts; h11 accepts any token, so both are held to this list
# and behave alike. Mapping bytes to str also saves a decode per request.
KNOWN_METHODS = {
    m.encode(): m
    for m in (
        "GET HEAD POST PUT DELETE OPTIONS PATCH TRACE CONNECT QUERY PURGE COPY LOCK MKCOL MOVE "
        "PROPFIND PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE "
        "M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE MKCALENDAR LINK UNLINK SOURCE"
    ).split()
}
# Content-length stand-in for a chunked request body (see RequestResponseCycle.body_left).
CHUNKED_BODY = UNKNOWN_LENGTH
# Request headers the server itself looks at; any other header costs one failed dict lookup.
_CONNECTION, _HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _EXPECT, _UPGRADE, _PROXY, _PROXY_CONNECTION = range(8)
_WATCHED_REQUEST_HEADERS = {
    b"connection": _CONNECTION,
    b"proxy-connection": _PROXY_CONNECTION,
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"expect": _EXPECT,
    b"upgrade": _UPGRADE,
    b"x-forwarded-for": _PROXY,
    b"x-forwarded-proto": _PROXY,
    b"forwarded": _PROXY,
}
_SUPPORTED_VERSIONS = frozenset(("1.1", "1.0"))
# RequestHead.upgrade for "Upgrade: h2c" (True stands for websocket: the common upgrade).
H2C = "h2c"
_UPGRADE_TOKENS: dict[bytes, bool | str] = {b"websocket": True, b"h2c": H2C}


class H1Head(RequestHead):
    """A request head with HTTP/1.1's keep-alive rule applied: ``keep_alive``, whether the
    connection may carry another request after this one, as the version and the Connection field
    say (the connection may still decide otherwise as the request goes: see H1Cycle)."""

    __slots__ = ("keep_alive",)
    keep_alive: bool


# H1Head, or another RequestHead with a keep_alive slot (http1/connection.H1Cycle: slots of two
# classes cannot be merged, so it declares its own).
Head = TypeVar("Head", bound=RequestHead)


def request_head(
    method: bytes,
    target: bytes,
    http_version: str,
    headers: list,
    client: tuple[str, int] | None,
    scheme: str,
    trusted_peer: bool,
    parser: Any,
    record: type[Head] = H1Head,  # type: ignore[assignment]
) -> Head:
    """The request head as HTTP/1.1 allows it, or BadRequest (a 4xx the client receives).

    ``headers``: the raw pairs, names lower-cased by the adapter. ``client``/``scheme``: the
    connection's; the head's are replaced by the glue if trusted proxy headers say otherwise
    (``head.forwarded`` holds them, collected only when ``trusted_peer``). ``parser``: asked
    ``confirm_http_version()`` when a header may have made the adapter misreport the version.
    ``record``: H1Head, or a class with its slots that carries the request on (the connection's
    H1Cycle: one object per request on the hot path)."""
    method_name = KNOWN_METHODS.get(method)
    if method_name is None:
        if method == b"PRI":
            raise BadRequest(400, HTTP2_PREFACE_HINT)
        raise BadRequest(400, UNSUPPORTED_METHOD)
    connection_says = None  # keep-alive as the Connection field has it, if it does
    version_unsure = False
    expect_100 = False
    upgrade: bool | str  # True (websocket), H2C or False
    upgrade = connection_upgrade = chunked = False
    hosts = content_lengths = 0
    proxy_headers = None
    watched = _WATCHED_REQUEST_HEADERS
    for name, value in headers:
        if name not in watched:  # (most fields: a test, where a .get() call costs 5 bytecodes more)
            continue
        kind = watched[name]
        if kind == _HOST:
            hosts += 1
        elif kind == _CONNECTION:
            # What browsers and most clients send, decided as the token rules below would
            # (~25 bytecodes less than lowering and searching).
            if value == b"keep-alive":
                connection_says = version_unsure = True
                continue
            if value == b"close":
                connection_says = False
                continue
            tokens = value.lower()
            keep_alive_token = tokens.find(b"keep-alive") >= 0
            if tokens.find(b"close") >= 0:
                connection_says = False
            elif keep_alive_token:
                connection_says = True
            if keep_alive_token:
                version_unsure = True  # see HttptoolsParser.on_headers_complete
            if tokens.find(b"upgrade") >= 0 and b"upgrade" in [t.strip(b" \t") for t in tokens.split(b",")]:
                # A whole token, as llhttp decides (it would parse on after "Upgrade:" or
                # "upgrades", and the switch would never come).
                connection_upgrade = True
        elif kind == _CONTENT_LENGTH:
            content_lengths += 1
            content_length = value
        elif kind == _TRANSFER_ENCODING:
            if chunked or value != b"chunked":
                # Only chunked, once, in HTTP/1.1: llhttp takes "gzip, chunked" or a second
                # line, h11 does not; both take chunked in HTTP/1.0, which RFC 9112 6.1 calls
                # faulty framing. Unknown codings and "chunked, chunked" are refused too.
                raise BadRequest(400, "Unsupported Transfer-Encoding")
            chunked = True
        elif kind == _EXPECT:
            expect_100 = value.lower() == b"100-continue"
        elif kind == _UPGRADE:
            upgrade = _UPGRADE_TOKENS.get(value.lower(), False)
        elif kind == _PROXY_CONNECTION:
            version_unsure = True
        elif trusted_peer:
            if proxy_headers is None:
                proxy_headers = {}
            proxy_headers[name] = value
    if version_unsure:
        http_version = parser.confirm_http_version(http_version)
    if http_version not in _SUPPORTED_VERSIONS:
        raise BadRequest(400, "Unsupported HTTP version")
    if chunked and http_version == "1.0":
        raise BadRequest(400, "Unsupported Transfer-Encoding")
    keep_alive = http_version != "1.0" if connection_says is None else connection_says
    if hosts != 1 and (hosts or http_version == "1.1"):
        raise BadRequest(400, "Missing Host header" if not hosts else "Multiple Host headers")
    if content_lengths:
        if content_lengths > 1:
            raise BadRequest(400, "Multiple Content-Length headers")
        if chunked:
            # Ambiguous framing, the root of request smuggling: never guess (RFC 9112 6.1).
            raise BadRequest(400, "Content-Length together with Transfer-Encoding")
        body_left = int(content_length)  # digits: both adapters checked
    else:
        body_left = CHUNKED_BODY if chunked else 0
    if target[0] == 0x2F:  # origin-form "/path?query", nearly every request
        raw_path, _, query_string = target.partition(b"?")
    else:
        raw_path, query_string = split_target(target)
    if not raw_path.isascii():
        raise BadRequest(400, "Invalid request target")
    path = raw_path.decode("ascii")
    if "%" in path:  # (str in str: "bytes in bytes" first tries the needle as an int)
        path = unquote(path)
    head = record()  # empty; filled slot by slot (see RequestHead)
    head.method = method_name
    head.raw_path = raw_path
    head.path = path
    head.query_string = query_string
    head.headers = headers
    head.http_version = http_version
    head.keep_alive = keep_alive  # type: ignore[attr-defined]  # (see Head)
    head.expect_100 = expect_100
    head.is_head = method_name == "HEAD"
    head.body_left = body_left
    head.client = client
    head.scheme = scheme
    head.upgrade = connection_upgrade and upgrade  # False, True (websocket) or H2C
    head.forwarded = proxy_headers
    return head


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """(raw path, query) of a request target other than origin-form: absolute-form keeps only the
    path and query, asterisk-form ("*", OPTIONS) stays as it is."""
    if target[:1] != b"/":
        if target == b"*":
            return target, b""
        scheme_end = target.find(b"://")
        if scheme_end > 0:  # absolute-form: keep only the path and query
            slash = target.find(b"/", scheme_end + 3)
            target = target[slash:] if slash >= 0 else b"/"
    raw_path, _, query_string = target.partition(b"?")
    return raw_path, query_string


def accepts_trailers(headers: list) -> bool:
    """Whether the request's TE field lists "trailers" (RFC 9110 10.1.4): only then may a chunked
    response carry a trailer section. Read when a response has trailers to send, not while the
    request head is parsed: requests without them pay nothing."""
    for name, value in headers:
        if name == b"te" and b"trailers" in [
            token.partition(b";")[0].strip(b" \t") for token in value.lower().split(b",")
        ]:
            return True
    return False
