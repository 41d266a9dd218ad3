"""The opening handshake, as pure functions returning decisions: scope, accept or refuse, the
accept's headers, denials. Two ways in: an HTTP/1.1 upgrade (RFC 6455 4.2, ``check_handshake``)
and an HTTP/2 extended CONNECT (RFC 8441 5, ``check_extended_connect``); the rest is shared.

The HTTP parsers have already parsed the request head, so the websockets ``Request`` is built from
those values: nothing is re-serialised or parsed twice. Nothing here touches a transport or writes
a wire format: the carrier renders the decisions (over HTTP/1.1 as a 101 or an HTTP response).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidHeader, InvalidHeaderValue
from websockets.http11 import Request, Response

from ..asgi.errors import InvalidResponse
from ..asgi.response_head import check_status, check_value, lower_name
from .deflate import agreed_params
from .websockets_compat import handshake_checker, negotiate_extensions, release

if TYPE_CHECKING:
    from .carrier import HandshakeRequest, UpgradedConnection

# Headers that belong to the handshake itself; an app cannot set them through websocket.accept.
_HANDSHAKE_HEADERS = frozenset(
    (b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-extensions")
)
_SUBPROTOCOL = b"sec-websocket-protocol"


def build_scope(request: HandshakeRequest, conn: UpgradedConnection) -> dict[str, Any]:
    state = conn.state
    return {
        "type": "websocket",
        "asgi": {**state.asgi_info},  # a copy, as the extensions are: an app may write to its scope
        "http_version": request.http_version,
        "scheme": "wss" if request.scheme == "https" else "ws",
        "server": conn.server,
        "client": request.client,
        "root_path": conn.config.root_path,
        "path": request.path,
        "raw_path": request.raw_path,
        "query_string": request.query_string,
        "headers": request.headers,
        "subprotocols": offered_subprotocols(request.headers),
        "state": state.app_state.copy(),
        "extensions": _extensions(conn.tls),
    }


def _extensions(tls: dict[str, Any] | None) -> dict[str, Any]:
    """Fresh dicts for every scope: what one app writes must not show up in other connections."""
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    if tls is not None:
        extensions["tls"] = {**tls}
    return extensions


def offered_subprotocols(headers: list[tuple[bytes, bytes]]) -> list[str]:
    offered = []
    for name, value in headers:
        if name == _SUBPROTOCOL:
            offered += (token.strip() for token in value.decode("latin-1").split(","))
    return [token for token in offered if token]


def websockets_request(request: HandshakeRequest) -> Request:
    """The already-parsed request, in the form ``ServerProtocol.accept()`` checks."""
    headers = Headers()
    for name, value in request.headers:
        headers[name.decode("latin-1")] = value.decode("latin-1")
    target = request.raw_path.decode("ascii")
    if request.query_string:
        target += "?" + request.query_string.decode("latin-1")
    return Request(target, headers)  # the HTTP version is checked by the session (websockets < 14 has no field)


def is_version_mismatch(exc: Exception | None) -> bool:
    """RFC 6455 4.2.2: an unsupported version is answered 426 with the version we speak."""
    return isinstance(exc, InvalidHeaderValue) and exc.name == "Sec-WebSocket-Version"


class Accept:
    """The handshake is valid: the response headers of the accept so far (over HTTP/1.1 what
    websockets computed: Sec-WebSocket-Accept, extensions, ...; over HTTP/2 the extensions alone)
    and the permessage-deflate parameters agreed in them (None: not agreed), for when the app
    accepts."""

    __slots__ = ("headers", "deflate")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        answer = next((value for name, value in headers if name.lower() == b"sec-websocket-extensions"), None)
        self.deflate = agreed_params(None if answer is None else answer.decode("latin-1"))


def _header_items(response: Response) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.raw_items()]


class Refusal:
    """The handshake is invalid: answer ``status`` with ``reason``; ``exc`` says why, for the log."""

    __slots__ = ("status", "reason", "headers", "exc")

    def __init__(self, status: int, exc: Exception | None, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.reason = f"Invalid WebSocket handshake: {exc}"
        self.headers = headers
        self.exc = exc


def check_handshake(request: HandshakeRequest, extensions: Any) -> Accept | Refusal:
    """Validate the handshake before the app sees it: a 400 or 426 refusal for a malformed one."""
    checker = handshake_checker(extensions)
    try:
        if request.http_version != "1.1":
            raise ValueError(f"WebSocket needs HTTP/1.1, not HTTP/{request.http_version}")
        response, exc = checker.accept(websockets_request(request)), checker.handshake_exc
    except (ValueError, InvalidHeader) as error:  # an HTTP version or header websockets refuses
        response, exc = None, error
    finally:
        release(checker)
    if response is not None and response.status_code == 101:
        return Accept(_header_items(response))
    if is_version_mismatch(exc):
        return Refusal(426, exc, [(b"sec-websocket-version", b"13"), (b"upgrade", b"websocket")])
    return Refusal(response.status_code if response is not None else 400, exc, [])


def check_extended_connect(request: HandshakeRequest, protocol: str | None, extensions: Any) -> Accept | Refusal:
    """RFC 8441 5: an HTTP/2 CONNECT with ``:protocol`` (``protocol``) as a WebSocket handshake.

    The HTTP/2 side has checked the request itself (CONNECT, ``:scheme``, ``:path``; a malformed
    one is its stream error). Here: ``:protocol websocket`` and ``sec-websocket-version: 13``;
    Sec-WebSocket-Key and -Accept are not used (a key sent anyway is ignored); extensions are
    negotiated as over HTTP/1.1. A refusal is a plain 400 (a 426 would need an Upgrade header,
    which HTTP/2 forbids), naming the version we speak when that was the fault.
    """
    try:
        headers = websockets_request(request).headers
        if protocol != "websocket":
            raise ValueError(f"extended CONNECT for protocol {protocol!r}, not 'websocket'")
        versions = headers.get_all("Sec-WebSocket-Version")
        if not versions:
            raise InvalidHeader("Sec-WebSocket-Version")
        if versions != ["13"]:
            raise InvalidHeaderValue("Sec-WebSocket-Version", ", ".join(versions))
        extension_header = negotiate_extensions(extensions, headers)
    except (ValueError, InvalidHandshake) as error:
        refusal_headers = [(b"sec-websocket-version", b"13")] if is_version_mismatch(error) else []
        return Refusal(400, error, refusal_headers)
    accept_headers = [] if extension_header is None else [(b"sec-websocket-extensions", extension_header.encode("latin-1"))]
    return Accept(accept_headers)


def complete_accept(
    accept: Accept, message: dict[str, Any], default_headers: list
) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """The accept's response headers with the app's subprotocol and headers (from
    ``websocket.accept``) and the server's defaults added.

    Returns the headers and the subprotocol in use. Raises InvalidResponse for a malformed header.
    """
    headers = list(accept.headers)
    # Set by the handshake, not by the app or the defaults: over HTTP/1.1 also websockets' Date
    # (over HTTP/2 the Date is the server's default, or the app's).
    taken = _HANDSHAKE_HEADERS.union(name.lower() for name, _ in headers)
    subprotocol = message.get("subprotocol")
    for name, value in message.get("headers") or ():
        lowered = lower_name(name)
        check_value(value)
        if lowered == _SUBPROTOCOL:
            if subprotocol is None:  # as a header rather than the 'subprotocol' key: honour it
                subprotocol = value.decode("latin-1")
            continue
        if lowered in taken:
            continue
        headers.append((name, value))
    present = {lower_name(name) for name, _ in headers}
    for name, value in default_headers:  # the server's (Server, Date, --header), unless set already
        if name not in present:
            headers.append((name, value))
    if subprotocol is not None:
        if not isinstance(subprotocol, str) or any(c in subprotocol for c in "\r\n\0,"):
            raise InvalidResponse(f"invalid subprotocol {subprotocol!r}")
        headers.append((b"Sec-WebSocket-Protocol", subprotocol.encode("latin-1")))
    return headers, subprotocol


class DenialResponse:
    """An HTTP response the app sends instead of accepting (``websocket.http.response.*``).

    The body is collected and handed to the carrier in one piece with the head: denial bodies are
    small, and a content-length lets every client read them without chunked decoding. The headers
    are the server's defaults (those the app does not set) and the app's, checked here; framing
    headers are the carrier's.
    """

    __slots__ = ("status", "headers", "parts")

    def __init__(self, message: dict[str, Any], state: Any) -> None:
        status = check_status(message["status"])
        app_headers = message.get("headers") or ()
        headers: list[tuple[bytes, bytes]] = []
        names = set()
        for name, value in app_headers:
            lowered = lower_name(name)
            if lowered in (b"transfer-encoding", b"connection"):
                continue  # the connection closes after this response; framing is ours
            check_value(value)
            names.add(lowered)
            headers.append((name, value))
        defaults = state.default_header_items
        if names & {b"server", b"date"}:
            defaults = [(name, value) for name, value in defaults if name not in names]
        self.status = status
        self.headers = defaults + headers
        self.parts: list[bytes] = []

    def add(self, body: bytes) -> None:
        if body:
            self.parts.append(bytes(body))

    def body(self) -> bytes:
        return b"".join(self.parts)


class HandshakeRecord:
    """What the access log needs to describe a handshake, shaped like an HTTP cycle."""

    __slots__ = ("scope", "status", "bytes_sent", "response_headers", "start_time")

    def __init__(self, scope: dict[str, Any], status: int, start_time: float) -> None:
        self.scope = {**scope, "method": "CONNECT" if scope["http_version"] == "2" else "GET"}
        self.status = status
        self.bytes_sent = 0
        self.response_headers = ()
        self.start_time = start_time
