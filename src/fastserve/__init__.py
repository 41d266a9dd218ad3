"""fastserve: a high-performance asyncio ASGI server."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config  # noqa: E402
from .main import run  # noqa: E402
from .server import Server  # noqa: E402

__all__ = ["Config", "Server", "run", "__version__"]
