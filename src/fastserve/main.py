"""``fastserve.run()``: pick single process, --reload or --workers, and return the exit status."""

from __future__ import annotations

from typing import Any

from .config import Config
from .logging import configure_logging


def run(app: Any = None, **options: Any) -> int:
    """Serve ``app`` (an ASGI callable or a "module:attr" string) with CLI-equivalent options.

    Also accepts a ready :class:`Config` as the only argument. Returns the process exit status.
    """
    config = app if isinstance(app, Config) else Config(app=app, **options)
    configure_logging(config)
    if config.reload:
        from .supervisors import reload

        return reload.run(config)
    if (config.workers or 1) > 1:
        from .supervisors import multiprocess

        return multiprocess.run(config)
    from .server import Server

    return Server(config).run()
