"""``fastserve.run()``: pick single process, --reload or --workers; exit with the documented status."""

from __future__ import annotations

import logging
import multiprocessing.process
import sys
from typing import Any

from .config import Config
from .logging import configure_logging

logger = logging.getLogger("fastserve.error")

EXIT_SETUP = 1  # as server.EXIT_SETUP (not imported: server.py pulls in the whole HTTP stack)

MAIN_GUARD_MISSING = (
    "fastserve.run(...) with reload or workers ran again inside a child process it started: child "
    'processes import your main module again, so call it under `if __name__ == "__main__":`.'
)


def run(app: Any = None, **options: Any) -> int:
    """Serve ``app`` (an ASGI callable or a "module:attr" string) with CLI-equivalent options.

    Also accepts a ready :class:`Config` as the only argument. Returns 0 after a normal shutdown;
    when the server cannot start or stops with an error, exits the process (``SystemExit``) with
    the status the CLI would (README, "Exit statuses"), as ``uvicorn.run`` does. A bad option
    value raises :class:`~fastserve.config.ConfigError` (a ``ValueError``).
    """
    config = app if isinstance(app, Config) else Config(app=app, **options)
    configure_logging(config)
    status = _run(config)
    if status:
        sys.exit(status)
    return 0


def _run(config: Config) -> int:
    starts_processes = config.reload or (config.workers or 1) > 1
    if starts_processes and getattr(multiprocessing.process.current_process(), "_inheriting", False):
        # multiprocessing's spawn is importing the parent's __main__ in a new child: without
        # the guard this call runs again there, and multiprocessing fails with a long traceback.
        logger.error("%s", MAIN_GUARD_MISSING)
        return EXIT_SETUP
    if config.reload:
        from .supervisors import reload

        return reload.run(config)
    if (config.workers or 1) > 1:
        from .supervisors import multiprocess

        return multiprocess.run(config)
    from .server import Server

    return Server(config).run()
