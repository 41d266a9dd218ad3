"""The ASGI lifespan protocol: startup and shutdown events, with shared state."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger("fastserve.error")


class Lifespan:
    """``on`` requires the app to support lifespan; ``auto`` carries on if it raises; ``off`` never asks."""

    def __init__(self, app: Any, mode: str) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.unsupported = mode == "off"
        self.startup_failed = False
        self.shutdown_failed = False
        self._queue: asyncio.Queue | None = None
        self._startup_done: asyncio.Event | None = None
        self._shutdown_done: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def startup(self) -> bool:
        """Run startup; False means the server must not start."""
        if self.mode == "off":
            return True
        logger.info("Waiting for application startup.")
        self._queue = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._queue.put({"type": "lifespan.startup"})
        await self._startup_done.wait()
        if self.startup_failed or (self.unsupported and self.mode == "on"):
            logger.error("Application startup failed. Exiting.")
            return False
        if not self.unsupported:
            logger.info("Application startup complete.")
        return True

    async def shutdown(self, timeout: float) -> None:
        if self.unsupported or self._queue is None:
            return
        logger.info("Waiting for application shutdown.")
        await self._queue.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._shutdown_done.wait(), timeout)
        except asyncio.TimeoutError:
            logger.error("Application shutdown did not finish within %ss.", timeout)
            self._task.cancel()
            return
        if self.shutdown_failed or (self.unsupported and self.mode == "on"):
            logger.error("Application shutdown failed.")
        else:
            logger.info("Application shutdown complete.")

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            self.unsupported = True
            if self.startup_failed or self.shutdown_failed:
                return
            if self.mode == "auto":
                logger.info("ASGI 'lifespan' protocol appears unsupported by the app (%s: %s).", type(exc).__name__, exc)
            else:
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
        else:
            if not self._startup_done.is_set():
                self.unsupported = True
                if self.mode == "auto":
                    logger.info("ASGI 'lifespan' protocol appears unsupported by the app (it returned at once).")
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> dict[str, Any]:
        return await self._queue.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self.startup_failed = True
            self._startup_done.set()
            if message.get("message"):
                logger.error("%s", message["message"])
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self.shutdown_failed = True
            self._shutdown_done.set()
            if message.get("message"):
                logger.error("%s", message["message"])
        else:
            raise RuntimeError(f"Unexpected ASGI lifespan message {kind!r}")
