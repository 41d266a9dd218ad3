"""HTTP/2: the codec layer (codec.py, the contract; zttp_codec.py and h2_codec.py, its adapters),
the request rules (semantics.py), one stream as the ASGI cycle's connection and sink (stream.py)
and the connection that drives a codec (connection.py, the only module here that does I/O).
"""

from __future__ import annotations

from .codec import H2Settings

_INSTALL_HINT = "HTTP/2 needs the {library} library: pip install 'fastserve[http2]'"


def codec_class(name: str, settings: H2Settings | None = None) -> type:
    """The codec adapter for --http2-codec (auto/zttp/h2).

    'auto' prefers zttp (compiled, ~20x faster here: benchmarks/RESULTS.md) when it is installed and can advertise
    `settings` (zttp 0.0.x has fixed SETTINGS), else h2. Naming a codec that is not installed, or
    zttp with settings it cannot express, raises ImportError / CodecCannotExpress.
    """
    if name not in ("auto", "zttp", "h2"):
        raise ValueError(f"unknown HTTP/2 codec {name!r}: choose auto, zttp or h2")
    settings = settings or H2Settings()
    if name in ("auto", "zttp"):
        try:
            from .zttp_codec import ZttpCodec
        except ImportError:
            if name == "zttp":
                raise ImportError(_INSTALL_HINT.format(library="zttp (CPython 3.11+)")) from None
        else:
            if name == "zttp" or ZttpCodec.supports(settings):
                return ZttpCodec
    try:
        from .h2_codec import H2Codec
    except ImportError:
        raise ImportError(_INSTALL_HINT.format(library="h2")) from None
    return H2Codec
