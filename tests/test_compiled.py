"""The compiled build (setup.py: the hot-path modules through mypyc) and how to tell it apart.

`make test` runs the suite on the .py files (the editable install); `make test-compiled` runs it
again on a compiled tree with FASTSERVE_EXPECT_COMPILED=1. Each run checks here that it tests what
it says: a stale extension next to the sources would otherwise hide every edit from the first, and
a failed build would leave the second testing Python again.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys

import pytest

from fastserve.compiled import HOT_PATH_MODULES, build_kind, compiled_modules

from .helpers import ROOT

EXPECT_COMPILED = os.environ.get("FASTSERVE_EXPECT_COMPILED") == "1"


def test_this_run_tests_the_build_it_means():
    if EXPECT_COMPILED:
        assert compiled_modules() == list(HOT_PATH_MODULES), "make test-compiled ran on .py files"
        assert build_kind() == "compiled"
    else:
        assert compiled_modules() == [], "an extension shadows its .py file: rebuild, or delete it"
        assert build_kind() == "pure Python"


def test_version_says_which_build():
    result = subprocess.run([sys.executable, "-m", "fastserve", "--version"], capture_output=True, text=True,
                            cwd=ROOT, timeout=30)
    assert f"({'compiled' if EXPECT_COMPILED else 'pure Python'})" in result.stdout


def test_setup_compiles_the_listed_modules_and_only_when_asked(monkeypatch):
    setup = ROOT / "setup.py"
    calls = []

    class FakeMypyc:
        @staticmethod
        def mypycify(args, **options):
            calls.append(args)
            return ["extensions"]

    import setuptools

    monkeypatch.setattr(setuptools, "setup", lambda **kw: calls.append(kw))
    monkeypatch.setitem(sys.modules, "mypyc.build", FakeMypyc)
    monkeypatch.chdir(ROOT)
    for argv, choice, compiled in [
        (["setup.py", "bdist_wheel"], None, True),  # pip wheel . / pip install .
        (["setup.py", "editable_wheel"], None, False),  # pip install -e .
        (["setup.py", "dist_info"], None, False),  # metadata only
        (["setup.py", "editable_wheel"], "1", True),
        (["setup.py", "bdist_wheel"], "0", False),
    ]:
        calls.clear()
        monkeypatch.setattr(sys, "argv", argv)
        if choice is None:
            monkeypatch.delenv("FASTSERVE_COMPILE", raising=False)
        else:
            monkeypatch.setenv("FASTSERVE_COMPILE", choice)
        runpy.run_path(str(setup))
        if compiled:
            paths = [arg for arg in calls[0] if not arg.startswith("--")]
            assert paths == [f"src/{name.replace('.', '/')}.py" for name in HOT_PATH_MODULES]
            assert calls[1] == {"ext_modules": ["extensions"]}
        else:
            assert calls == [{"ext_modules": []}], argv
    monkeypatch.setenv("FASTSERVE_COMPILE", "yes")
    with pytest.raises(SystemExit, match="auto, 0 or 1"):
        runpy.run_path(str(setup))


def test_every_listed_module_exists():
    for name in HOT_PATH_MODULES:
        assert (ROOT / "src" / (name.replace(".", "/") + ".py")).is_file(), name
