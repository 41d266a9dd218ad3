"""fastserve as the benchmarks run it: a copy of a source tree, its hot path compiled as a wheel
builds it (setup.py, mypyc), or left as Python (``--pure``).

Every tool that runs fastserve from a tree (the benchmark run's snapshot of the checkout, the
``--base`` revision of the A/B tools) puts ``<copy>/src`` first on PYTHONPATH; the copy is built
with the benchmark venv's interpreter, the one the servers run on.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .peers_env import REPO_ROOT

# What a build needs besides src/ (setup.py reads pyproject.toml, which names README.md).
BUILD_FILES = ("setup.py", "pyproject.toml", "README.md")


def copy_checkout(target: Path) -> Path:
    """The checkout's src/ and build files, as they are now (edits included), copied to ``target``."""
    shutil.copytree(REPO_ROOT / "src", target / "src", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in BUILD_FILES:
        if (REPO_ROOT / name).exists():
            shutil.copy2(REPO_ROOT / name, target / name)
    return target


def export_revision(rev: str, target: Path) -> Path:
    """src/ and the build files of git revision ``rev`` (those it has), exported to ``target``."""
    listed = subprocess.run(["git", "ls-tree", "--name-only", rev, *BUILD_FILES], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    archive = subprocess.run(["git", "archive", rev, "src", *listed], cwd=REPO_ROOT, capture_output=True, check=True)
    with tempfile.TemporaryFile() as tar:
        tar.write(archive.stdout)
        tar.seek(0)
        with tarfile.open(fileobj=tar) as opened:
            opened.extractall(target, filter="data")
    return target


def build(tree: Path, python: Path | str) -> str:
    """Compile ``tree``'s hot path in place with ``python``: "compiled", or "pure Python" for a
    tree from before the compiled build (no setup.py). Raises with mypyc's output if it fails.
    A tree built before (same files, same interpreter) takes its extensions from CACHE (a build
    takes ~20 s; the smoke tests and repeated A/B runs would pay it every time)."""
    if not (tree / "setup.py").exists():
        return "pure Python"
    cached = CACHE / _fingerprint(tree, python)
    if not (cached / "done").exists():
        result = subprocess.run([str(python), "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                                env={**os.environ, "FASTSERVE_COMPILE": "1"}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {tree} failed:\n{(result.stdout + result.stderr)[-3000:]}")
        shutil.rmtree(cached, ignore_errors=True)
        for built in (tree / "src").rglob("*.so"):
            place = cached / built.relative_to(tree / "src")
            place.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, place)
        (cached / "done").touch()
        return "compiled"
    for built in cached.rglob("*.so"):
        shutil.copy2(built, tree / "src" / built.relative_to(cached))
    return "compiled"


CACHE = Path(__file__).resolve().parent / ".compiled-cache"


def _fingerprint(tree: Path, python: Path | str) -> str:
    digest = hashlib.sha256(os.fsencode(os.path.realpath(python)))
    digest.update(subprocess.run([str(python), "-c", "import sys; print(sys.version)"], capture_output=True).stdout)
    for path in sorted([*(tree / name for name in BUILD_FILES), *(tree / "src").rglob("*.py")]):
        if path.exists():
            digest.update(os.fsencode(path.relative_to(tree)) + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def prepared(tree: Path, python: Path | str, pure: bool) -> tuple[dict[str, str], str]:
    """The environment that runs fastserve from ``tree`` (built unless ``pure``), and its build kind."""
    kind = "pure Python" if pure else build(tree, python)
    return {**os.environ, "PYTHONPATH": str(tree / "src")}, kind


def fastserve_envs(servers: list[str], base: str, python: Path | str, pure: bool, folder: Path,
                   say=print) -> dict[str, dict[str, str]]:
    """The environment of each fastserve server of an A/B tool: ``fastserve-base`` runs revision
    ``base``, every other one the checkout as it is now; both copied into ``folder`` and built."""
    this_env, kind = prepared(copy_checkout(folder / "checkout"), python, pure)
    say(f"fastserve: this checkout ({kind})")
    envs = {name: this_env for name in servers if name != "fastserve-base"}
    if "fastserve-base" in servers:
        base_env, base_kind = prepared(export_revision(base, folder / "base"), python, pure)
        say(f"fastserve-base: {base} ({base_kind})")
        envs["fastserve-base"] = base_env
    return envs


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.compiled TARGET``: the checkout copied to TARGET and compiled there
    (what ``make compiled`` runs: one way to build a compiled tree, cached as above)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.compiled TARGET (a folder that does not exist yet)", file=sys.stderr)
        return 2
    try:
        kind = build(copy_checkout(Path(args[0])), sys.executable)
    except RuntimeError as exc:
        print(f"mypyc could not compile the hot path: {exc}", file=sys.stderr)
        return 1
    print(f"{args[0]}: {kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
