"""Turning ASGI response messages into HTTP/1.1 bytes: moved. Validation is in
asgi/response_head.py (no wire format), HTTP/1.1 rendering in http1/render.py; the names are
re-exported here for the modules that still import them from here (the WebSocket handshake,
health.py, the cycle)."""

from __future__ import annotations

from ..asgi.response_head import check_status, lower_name  # noqa: F401
from ..http1.render import (  # noqa: F401
    _STATUS_LINES,
    CACHED_LENGTHS,
    CHUNKED,
    CONNECTION_CLOSE,
    CONTENT_LENGTH_ENDS,
    CONTINUE_RESPONSE,
    FINAL_CHUNK,
    HEADS,
    check_header_block,
    chunk,
    header_block,
    simple_response,
    status_line,
)

# An app's response headers as (HTTP/1.1 header block, content-length or None, chunked, the app
# asked to close, the app sets server or date itself); raises InvalidResponse for invalid ones.
parse_response_headers = HEADS.get
