"""A coroutine's step run by hand, kept in Python on purpose (not in fastserve/compiled.py's list).

HTTPProtocol._start runs an app's first step itself on Python 3.11 (see there), and most apps are
done in it: the step ends in StopIteration. Caught in compiled code, each one costs mypyc a
traceback entry with a code object made for it; caught here, by the interpreter, less. Per
keep-alive GET (callgrind): compiled 47.9k -> 46.4k instructions; the pure build pays the call,
66.2k -> 66.8k.
"""

from __future__ import annotations

from typing import Any

FINISHED = object()  # what first_step returns for a coroutine that returned


def first_step(run: Any, coro: Any) -> Any:
    """``run(coro.send, None)`` (``run``: a Context's): what the coroutine yielded, or FINISHED.
    Any other exception out of the coroutine propagates."""
    try:
        return run(coro.send, None)
    except StopIteration:
        return FINISHED
