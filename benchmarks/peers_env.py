"""The benchmark venv (benchmarks/.venv): the peer servers and fastserve, one interpreter for all.

Every server runs from this venv so they share the Python build, the app files and the versions of
the libraries they have in common (uvloop, httptools, h11, Starlette, Django).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
VENV_DIR = BENCH_DIR / ".venv"
VENV_PYTHON = VENV_DIR / "bin" / "python"

# What the benchmark venv holds besides fastserve itself (installed editable from the repo).
PEER_REQUIREMENTS = (
    "uvicorn[standard]",
    "hypercorn[uvloop]",
    "gunicorn[http2]",  # its own ASGI worker (-k asgi), HTTP/2 on h2
    "granian",
    "daphne",
    "starlette",
    "django",
    "websockets",
    "matplotlib",
    "py-spy",
    # to compile fastserve's hot path as a wheel does (benchmarks/compiled.py, setup.py)
    "mypy==2.4.1",
    "setuptools>=77",
)
_STAMP = VENV_DIR / ".bench-installed"


def _wanted_stamp() -> str:
    pyproject = (REPO_ROOT / "pyproject.toml").read_bytes()
    text = "\n".join(PEER_REQUIREMENTS).encode() + hashlib.sha256(pyproject).digest()
    return hashlib.sha256(text).hexdigest()


def is_ready() -> bool:
    return VENV_PYTHON.exists() and _STAMP.exists() and _STAMP.read_text().strip() == _wanted_stamp()


def ensure_venv(log=print) -> Path:
    """Create benchmarks/.venv and install the peers into it, once (a stamp file remembers)."""
    if is_ready():
        return VENV_PYTHON
    if not VENV_PYTHON.exists():
        log(f"creating {VENV_DIR} with {sys.executable}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True)
    pip = [str(VENV_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    log("installing the peers: " + ", ".join(PEER_REQUIREMENTS))
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *PEER_REQUIREMENTS], check=True)
    log("installing fastserve (editable, with its HTTP/2 codecs) into the benchmark venv")
    subprocess.run([*pip, "-e", f"{REPO_ROOT}[http2]"], check=True)  # zttp also serves uvicorn --http zttp
    _STAMP.write_text(_wanted_stamp() + "\n")
    return VENV_PYTHON


def installed_versions(python: Path, names: list[str]) -> dict[str, str]:
    """Versions of the given distributions as seen by ``python`` (normally the benchmark venv's)."""
    code = (
        "import sys, importlib.metadata as m\n"
        "for n in sys.argv[1:]:\n"
        "    try: print(n, m.version(n))\n"
        "    except m.PackageNotFoundError: print(n, '-')\n"
    )
    out = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, check=True)
    return dict(line.split(" ", 1) for line in out.stdout.splitlines())
