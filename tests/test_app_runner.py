"""One app runner and one failure taxonomy (asgi/app_runner.py), with a stand-in for the cycle.
What the client sees after each kind of failure is in test_inprocess_http.py and test_http.py."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fastserve.asgi.app_runner import (
    CANCELLED,
    CRASHED,
    DISCONNECTED,
    INVALID_RESPONSE,
    failure_kind,
    log_failure,
    run_app,
)
from fastserve.asgi.errors import ClientDisconnected, InvalidResponse


class FrameworkError(Exception):
    """A framework re-raising a disconnect as its own error."""


def raised_while_handling_a_disconnect() -> FrameworkError:
    try:
        try:
            raise ClientDisconnected("gone")
        except ClientDisconnected as exc:
            raise FrameworkError("wrapped") from exc
    except FrameworkError as wrapped:
        return wrapped


def test_failure_kinds():
    assert failure_kind(ClientDisconnected("gone"), disconnected=False) is DISCONNECTED
    assert failure_kind(raised_while_handling_a_disconnect(), disconnected=True) is DISCONNECTED
    assert failure_kind(raised_while_handling_a_disconnect(), disconnected=False) is CRASHED  # client still there
    assert failure_kind(InvalidResponse("bad"), disconnected=False) is INVALID_RESPONSE
    assert failure_kind(asyncio.CancelledError(), disconnected=False) is CANCELLED
    assert failure_kind(ValueError("x"), disconnected=True) is CRASHED


def test_one_log_line_per_kind(caplog):
    caplog.set_level(logging.DEBUG, logger="fastserve.error")
    for kind, exc in ((DISCONNECTED, ClientDisconnected("gone")), (INVALID_RESPONSE, InvalidResponse("bad")),
                      (CANCELLED, asyncio.CancelledError()), (CRASHED, ValueError("x"))):
        log_failure(kind, exc)
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        ("DEBUG", "Client disconnected while the app was sending its response: ClientDisconnected('gone')", False),
        ("ERROR", "Invalid response from the ASGI app: bad", False),
        ("ERROR", "Exception in ASGI application", True),  # the traceback only for a crash
    ]


class Call:
    def __init__(self) -> None:
        self.scope = {"type": "http"}
        self.app_started = False
        self.outcome = None

    async def receive(self):
        return {"type": "http.request"}

    async def send(self, message) -> None:
        pass

    def app_finished(self) -> None:
        self.outcome = "finished"

    def app_failed(self, exc: BaseException) -> None:
        self.outcome = exc


def test_run_app_reports_how_the_app_ended():
    async def returns(scope, receive, send):
        assert scope == {"type": "http"}

    async def raises(scope, receive, send):
        raise ValueError("x")

    async def exits(scope, receive, send):
        raise SystemExit(3)

    call = Call()
    asyncio.run(run_app(call, returns))
    assert call.app_started and call.outcome == "finished"
    call = Call()
    asyncio.run(run_app(call, raises))  # an Exception is settled, not raised on
    assert isinstance(call.outcome, ValueError)
    call = Call()
    with pytest.raises(SystemExit):  # a BaseException is settled, then raised on
        asyncio.run(run_app(call, exits))
    assert isinstance(call.outcome, SystemExit)
