"""Running an ASGI app, the same for every kind of connection: the Task it runs in, and one
failure taxonomy (what an exception out of the app means, how it is logged, what the
connection does about it).

The taxonomy (``failure_kind``):
- DISCONNECTED: ClientDisconnected, or an exception raised while handling one once the client
  has gone (frameworks re-raise it as their own): a debug line, nothing to answer;
- INVALID_RESPONSE: the app sent a message the server refuses to put on the wire: one error
  line without a traceback (the message says what), then a 500 or a close;
- CANCELLED: the Task was cancelled (shutdown timed out): no log line; close what was started;
- CRASHED: anything else: the traceback, then a 500 or a close.
HTTP (the cycle) and WebSocket (the session) both use it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextvars import Context
from typing import Any, Protocol

from .errors import ClientDisconnected, InvalidResponse, caused_by_disconnect

logger = logging.getLogger("fastserve.error")

DISCONNECTED = "disconnected"
INVALID_RESPONSE = "invalid response"
CANCELLED = "cancelled"
CRASHED = "crashed"


class AppCall(Protocol):
    """What ``run_app`` runs an app for (an ASGI HTTP cycle, a WebSocket session)."""

    scope: dict[str, Any]
    app_started: bool

    async def receive(self) -> dict[str, Any]: ...

    async def send(self, message: dict[str, Any]) -> None: ...

    def app_finished(self) -> None:
        """The app returned."""

    def app_failed(self, exc: BaseException) -> None:
        """The app raised ``exc`` (see failure_kind)."""


async def run_app(call: AppCall, app: Any) -> None:
    """The app's Task: run it, then let ``call`` settle what it left undone (500, close, log).
    BaseExceptions other than Exception (KeyboardInterrupt, SystemExit, CancelledError) are
    settled, then raised on."""
    call.app_started = True
    try:
        await app(call.scope, call.receive, call.send)
    except BaseException as exc:
        call.app_failed(exc)
        if not isinstance(exc, Exception):
            raise
    else:
        call.app_finished()


def failure_kind(exc: BaseException, disconnected: bool) -> str:
    """What an exception out of the app means; ``disconnected``: the client has gone."""
    if isinstance(exc, ClientDisconnected) or (disconnected and caused_by_disconnect(exc)):
        return DISCONNECTED
    if isinstance(exc, InvalidResponse):
        return INVALID_RESPONSE
    if isinstance(exc, asyncio.CancelledError):
        return CANCELLED
    return CRASHED


# The debug line for an app that stopped because its client had gone, by scope type.
_GONE = {
    "http": "Client disconnected while the app was sending its response: %r",
    "websocket": "WebSocket app stopped after the client left: %r",
}


def log_failure(kind: str, exc: BaseException, scope_type: str = "http") -> None:
    """The one log line of an app failure (none for a cancelled app)."""
    if kind is DISCONNECTED:
        logger.debug(_GONE[scope_type], exc)
    elif kind is INVALID_RESPONSE:
        logger.error("Invalid response from the ASGI app: %s", exc)
    elif kind is CRASHED:
        logger.error("Exception in ASGI application", exc_info=exc)


# Every app Task gets this name. Left unnamed, asyncio 3.11 formats a "Task-<n>" name for each one
# (a str formatting per request, ~500 instructions); reprs and debug logs show this one instead.
APP_TASK_NAME = "fastserve app"
# Python 3.11 exactly: the HTTP connection makes the Task itself (see HTTPProtocol._start).
INLINE_TASK = sys.version_info[:2] == (3, 11)

# asyncio's private pair that makes a Task current for a step run by hand: what 3.12's eager Task
# start uses (asyncio.tasks, 3.11 to 3.14). The one place fastserve touches asyncio's internals;
# only the 3.11 keep-alive path uses them (HTTPProtocol._start: the idle app Task runs the next
# request's first step at once, -3.6k instructions per keep-alive GET).
enter_task = asyncio.tasks._enter_task
leave_task = asyncio.tasks._leave_task


# How new_task makes a Task: 3.12+ starts it eagerly (the public eager_start); 3.11 and later take
# the context as an argument. (Branches in one function: mypyc compiles no conditional definition.)
EAGER_START = sys.version_info >= (3, 12)
TASK_TAKES_CONTEXT = sys.version_info >= (3, 11)


def new_task(coro: Any, loop: asyncio.AbstractEventLoop, context: Context) -> asyncio.Task:
    """A Task for ``coro``, started eagerly where asyncio can (3.12+: public ``eager_start``).

    ``context``: the connection's own, never entered by an app (see HTTPProtocol.connection_made);
    the Task runs in a copy of it. Left to asyncio, the Task would copy the context current where
    it is made, which for a request started from inside the previous request's Task (pipelined,
    or queued by h11) is that request's: what one app set would show up in the next.
    Made directly, not through ``loop.create_task`` (uvloop's wrapper costs ~1,300 instructions
    per request, callgrind), so a task factory set on the loop is not used, as with eager_start."""
    if EAGER_START:
        return asyncio.Task(coro, loop=loop, name=APP_TASK_NAME, context=context.copy(), eager_start=True)  # type: ignore[call-arg]
    if TASK_TAKES_CONTEXT:
        return asyncio.Task(coro, loop=loop, name=APP_TASK_NAME, context=context.copy())  # type: ignore[call-arg]
    return context.copy().run(asyncio.Task, coro, loop=loop, name=APP_TASK_NAME)  # 3.10: no context=
