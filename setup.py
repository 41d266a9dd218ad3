"""The build: everything is in pyproject.toml except the compiled hot path.

The modules a keep-alive request runs through (HOT_PATH_MODULES) are compiled with mypyc into C
extensions when the build asks for it. They are the same .py files, compiled as they are: the
source stays the one source (no second dialect), and every other module, and any module whose
extension is missing, runs as Python. Compiled, a wrk GET takes 46k instructions in process
instead of 67k, and hello c64 8.7-9.8 µs of server CPU per request where the pure build takes
10.7-11.3 (benchmarks/RESULTS.md, 2026-12-02, evening).

FASTSERVE_COMPILE chooses:
- unset or "auto": compiled for a wheel (``pip install .``, ``pip wheel .``), not for an editable
  install (``pip install -e .``: an edited .py must take effect without a rebuild, which a stale
  extension would hide);
- "1": compiled, editable installs too (then rebuild after every edit);
- "0": pure Python (no C compiler needed).
"""

from __future__ import annotations

import os
import runpy
import sys

from setuptools import setup

# What a request and its response run through on HTTP/1.1, the protocol-neutral core with it:
# listed in fastserve/compiled.py (which reports at run time which of them a build compiled).
HOT_PATH_MODULES = runpy.run_path("src/fastserve/compiled.py")["HOT_PATH_MODULES"]


def compile_wanted() -> bool:
    choice = os.environ.get("FASTSERVE_COMPILE", "auto")
    if choice not in ("auto", "0", "1"):
        raise SystemExit(f"FASTSERVE_COMPILE must be auto, 0 or 1, not {choice!r}")
    if choice == "auto":
        # setuptools runs this file once per step, with the step's command as argv: only the
        # steps that build (not metadata, not editable_wheel for pip install -e) compile.
        return any(command in sys.argv for command in ("bdist_wheel", "build", "build_ext", "install"))
    return choice == "1"


def extensions() -> list:
    if not compile_wanted():
        return []
    from mypyc.build import mypycify

    paths = [f"src/{name.replace('.', '/')}.py" for name in HOT_PATH_MODULES]
    # (pyproject.toml types fastserve without strict optional, which mypyc needs; the modules not
    # compiled are read for their types, their errors are not ours to fix here)
    return mypycify(["--strict-optional", "--follow-imports=silent", "--no-warn-unused-configs", *paths], opt_level="3")


setup(ext_modules=extensions())
