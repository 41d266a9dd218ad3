"""HTTP/1.1: parser adapters, request rules, the response writer and the connection protocol."""

from __future__ import annotations


def parser_class(name: str) -> type:
    """The parser adapter for --http; 'auto' prefers httptools when it is installed."""
    if name in ("auto", "httptools"):
        try:
            from .httptools_parser import HttptoolsParser
        except ImportError:
            if name == "httptools":
                raise
        else:
            return HttptoolsParser
    from .h11_parser import H11Parser

    return H11Parser
