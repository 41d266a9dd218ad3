"""The errors an ASGI app meets, in no wire format."""

from __future__ import annotations


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the client has gone away (ASGI HTTP spec 2.4)."""


def caused_by_disconnect(exc: BaseException) -> bool:
    """True for ClientDisconnected, or an exception raised while handling one (frameworks such as
    Starlette re-raise it as their own error, keeping it as ``__cause__``/``__context__``)."""
    seen = 0
    while exc is not None and seen < 32:  # bounded: a chain may loop back on itself
        if isinstance(exc, ClientDisconnected):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class InvalidResponse(RuntimeError):
    """The application sent a response fastserve refuses to put on the wire."""


class FileEnded(EOFError):
    """A file sent with pathsend or zerocopysend held fewer bytes than announced (it was truncated
    while being sent)."""
