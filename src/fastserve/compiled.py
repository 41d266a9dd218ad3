"""Whether this fastserve runs its hot path compiled (mypyc, see setup.py) or as Python.

A build compiles the modules setup.py lists when asked to (FASTSERVE_COMPILE); an editable
install, and any module whose extension is missing, runs the .py files. ``fastserve --version``
says which (as do the benchmark tools), so a benchmark or a bug report knows what it measured.
"""

from __future__ import annotations

import importlib
from importlib.machinery import EXTENSION_SUFFIXES
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what mypyc reads (it handles the decorator itself when it compiles)
    from mypy_extensions import mypyc_attr
else:  # at run time, a no-op: mypy_extensions is a build requirement only (with mypy)

    def mypyc_attr(*args: Any, **options: Any) -> Any:
        return lambda cls: cls

# What setup.py compiles when asked (it reads this list: keep this module stdlib-only).
HOT_PATH_MODULES = (
    "fastserve.asgi.app_runner",
    "fastserve.asgi.flow",
    "fastserve.asgi.http_cycle",
    "fastserve.asgi.request",
    "fastserve.asgi.response_head",
    "fastserve.asgi.scope",
    "fastserve.batching",
    "fastserve.http1.connection",
    "fastserve.http1.httptools_parser",
    "fastserve.http1.semantics",
    "fastserve.http1.writer",
    "fastserve.state",
)


def compiled_modules() -> list[str]:
    """The hot-path modules that run as compiled extensions here."""
    return [name for name in HOT_PATH_MODULES if _is_extension(name)]


def _is_extension(name: str) -> bool:
    path = getattr(importlib.import_module(name), "__file__", None) or ""
    return path.endswith(tuple(EXTENSION_SUFFIXES))


def build_kind() -> str:
    """"compiled", "pure Python" or, for a build that compiled only some, "partly compiled"."""
    count = len(compiled_modules())
    if count == len(HOT_PATH_MODULES):
        return "compiled"
    return "partly compiled" if count else "pure Python"
