"""``--reload``: serve from a child process and replace it whenever watched files change.

The parent binds the socket once and never imports the application; each child is a fresh
interpreter (see ``process.py``). On a change the old child gets SIGTERM and, if it has not exited
within a short grace period (a hung app must not block a reload), SIGKILL; then a new child starts.
A child that fails (a syntax error in the file just saved) has its traceback logged, and the
supervisor keeps watching: the next good save starts a healthy child.

File watching uses ``watchfiles`` (OS notifications); where it cannot be imported, a small stat
poller takes its place.

Patterns: ``--reload-include`` and ``--reload-exclude`` add to the defaults instead of replacing
them. A file is watched when its name matches an include pattern and neither its name nor any
directory between it and the watched root matches an exclude pattern; a pattern containing ``/``
is matched against the path relative to the root. Naming a pattern in ``--reload-include`` removes
it from the excludes, and an explicitly included file name beats a default exclude of the name
(``--reload-include .env`` watches ``.env`` despite ``.*``); excluded directories stay excluded.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterable
from pathlib import PurePath

from ..config import Config, default_of
from .process import (
    ChildProcess,
    describe_exit,
    install_signal_handlers,
    supervise,
)

logger = logging.getLogger("fastserve.error")

# A reload restarts the whole app: in-flight requests get at most RELOAD_GRACE seconds, and a
# child still running RELOAD_KILL_AFTER seconds after SIGTERM (a hung app) is killed.
RELOAD_GRACE = 3.0
RELOAD_KILL_AFTER = 5.0
POLL_INTERVAL = 0.5  # the stat poller's tick (fallback only)


def run(config: Config) -> int:
    if not isinstance(config.app, str):
        logger.error('--reload needs the application as an import string, e.g. fastserve.run("package.module:app", reload=True).')
        return 1
    if (config.workers or 1) > 1:
        logger.warning("--reload serves from one process; --workers %d is ignored.", config.workers)
    return supervise(config, Reloader)


# -- which files ----------------------------------------------------------------------------------
class ReloadFilter:
    def __init__(self, roots: list[str], includes: Iterable[str], excludes: Iterable[str]) -> None:
        default_includes = default_of("reload_includes")
        default_excludes = default_of("reload_excludes")
        includes, excludes = list(includes), list(excludes)
        self.roots = sorted(roots, key=len, reverse=True)  # the deepest root owns a path
        self.extra_includes = [p for p in includes if p not in default_includes and p not in excludes]
        self.includes = _unique([*default_includes, *includes])
        self.includes = [p for p in self.includes if p not in excludes or p in self.extra_includes]
        user_excludes = [p for p in excludes if p not in default_excludes and p not in includes]
        self.user_excludes = user_excludes
        self.default_excludes = [p for p in default_excludes if p not in includes]

    def __call__(self, path: str) -> bool:
        parts = self._relative_parts(path)
        if not parts:
            return False
        relative = "/".join(parts)
        *dirs, name = parts
        excludes = [*self.default_excludes, *self.user_excludes]
        if any(_matches(d, d, excludes) for d in dirs):
            return False
        if _matches(name, relative, self.user_excludes):
            return False
        if _matches(name, relative, self.extra_includes):
            return True
        return _matches(name, relative, self.includes) and not _matches(name, relative, self.default_excludes)

    def _relative_parts(self, path: str) -> tuple[str, ...]:
        path = os.path.abspath(path)
        for root in self.roots:
            if path.startswith(root.rstrip(os.sep) + os.sep):
                return PurePath(os.path.relpath(path, root)).parts
        return ()

    def accepts_dir(self, path: str) -> bool:
        """For the stat poller: skip excluded directories without walking them."""
        parts = self._relative_parts(path)
        excludes = [*self.default_excludes, *self.user_excludes]
        return not any(_matches(d, d, excludes) for d in parts)


def _matches(name: str, relative: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if "/" in pattern:
            if PurePath(relative).match(pattern):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def watched_dirs(config: Config) -> list[str]:
    """--reload-dir (default: the current directory, plus --app-dir when it lies outside it);
    missing directories are skipped with a warning, nested ones folded into their parent."""
    dirs = [os.path.abspath(d) for d in config.reload_dirs]
    if not dirs:
        cwd = os.getcwd()
        app_dir = os.path.abspath(config.app_dir)
        dirs = [cwd] if _is_within(app_dir, cwd) else [cwd, app_dir]
    existing = []
    for d in _unique(dirs):
        if os.path.isdir(d):
            existing.append(d)
        else:
            logger.warning("--reload-dir %s is not a directory; not watching it.", d)
    return [d for d in existing if not any(other != d and _is_within(d, other) for other in existing)]


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# -- watching -------------------------------------------------------------------------------------
def watcher_name() -> str:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return "StatReload"
    return "WatchFiles"


async def watch_changes(dirs: list[str], accept: ReloadFilter, stop: asyncio.Event, delay: float) -> AsyncIterator[set[str]]:
    """Yield the set of changed paths, grouping changes that arrive within ``delay`` seconds."""
    try:
        import watchfiles
    except ImportError:
        async for changes in _poll_changes(dirs, accept, stop, delay):
            yield changes
        return
    step_ms = max(1, int(delay * 1000))
    async for changes in watchfiles.awatch(
        *dirs,
        watch_filter=lambda _change, path: accept(path),
        stop_event=stop,
        step=step_ms,
        debounce=max(1600, 4 * step_ms),
        ignore_permission_denied=True,
    ):
        yield {path for _change, path in changes}


async def _poll_changes(dirs: list[str], accept: ReloadFilter, stop: asyncio.Event, delay: float) -> AsyncIterator[set[str]]:
    """The fallback: compare mtimes every POLL_INTERVAL seconds."""
    before = _snapshot(dirs, accept)
    while not await _stopped_within(stop, POLL_INTERVAL):
        now = _snapshot(dirs, accept)
        changed = {p for p in before.keys() | now.keys() if before.get(p) != now.get(p)}
        if changed and not await _stopped_within(stop, delay):
            later = _snapshot(dirs, accept)  # pick up the rest of a multi-file save
            changed |= {p for p in now.keys() | later.keys() if now.get(p) != later.get(p)}
            now = later
        before = now
        if changed:
            yield changed


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


def _snapshot(dirs: list[str], accept: ReloadFilter) -> dict[str, float]:
    mtimes = {}
    for root in dirs:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if accept.accepts_dir(os.path.join(dirpath, d))]
            for name in filenames:
                path = os.path.join(dirpath, name)
                if accept(path):
                    try:
                        mtimes[path] = os.stat(path).st_mtime
                    except OSError:
                        pass
    return mtimes


# -- the supervisor -------------------------------------------------------------------------------
class Reloader:
    def __init__(self, config: Config, sockets: list) -> None:
        grace = min(config.timeout_graceful_shutdown, RELOAD_GRACE)
        self.child_config = config.replace(reload=False, timeout_graceful_shutdown=grace)
        self.kill_timeout = RELOAD_KILL_AFTER
        self.sockets = sockets
        self.dirs = watched_dirs(config)
        self.accept = ReloadFilter(self.dirs, config.reload_includes, config.reload_excludes)
        self.delay = config.reload_delay
        self.stop_event: asyncio.Event | None = None
        self.child: ChildProcess | None = None

    async def run(self) -> int:
        if not self.dirs:
            logger.error("--reload: no directory to watch.")
            return 1
        self.stop_event = asyncio.Event()
        install_signal_handlers({signal.SIGINT: self.handle_stop, signal.SIGTERM: self.handle_stop})
        logger.info("Will watch for changes in these directories: %s", self.dirs)
        logger.info("Started reloader process [%d] using %s", os.getpid(), watcher_name())
        self.start_child()
        async for changed in watch_changes(self.dirs, self.accept, self.stop_event, self.delay):
            if self.stop_event.is_set():
                break
            logger.warning("%s detected changes in %s. Reloading...", watcher_name(), self._describe(changed))
            await self.restart()
        await self.stop_child()
        logger.info("Stopping reloader process [%d]", os.getpid())
        return 0

    def handle_stop(self, sig: int) -> None:
        if self.stop_event.is_set() and sig == signal.SIGINT and self.child is not None:
            self.child.send_signal(signal.SIGQUIT)  # second Ctrl+C: the child skips the graceful wait
        self.stop_event.set()

    def start_child(self) -> None:
        self.child = ChildProcess(self.child_config, self.sockets, self._child_exited).start()

    def _child_exited(self, child: ChildProcess) -> None:
        if child.stop_requested or self.stop_event.is_set():
            return
        if child.exitcode == 0 and child.ready.result():
            # It served and stopped on its own (--limit-max-requests): carry on serving.
            logger.info("Server process [%d] exited; starting a new one.", child.pid)
            self.start_child()
            return
        logger.error(
            "Server process [%d] exited (%s); fix the error and save: watching for changes.",
            child.pid, describe_exit(child.exitcode),
        )

    async def restart(self) -> None:
        await self.stop_child()
        if not self.stop_event.is_set():
            self.start_child()

    async def stop_child(self) -> None:
        child = self.child
        if child is not None and not child.exited.done():
            await child.stop(self.kill_timeout)
        self.child = None

    def _describe(self, changed: set[str]) -> str:
        names = sorted(self._relative(p) for p in changed)
        shown = ", ".join(repr(n) for n in names[:5])
        return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    def _relative(self, path: str) -> str:
        for root in self.dirs:
            if _is_within(path, root):
                return os.path.relpath(path, root)
        return path
