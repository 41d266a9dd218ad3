"""Loading the application: "module:attr" strings, factories, .env files, ASGI 2 detection."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from typing import Any

from .config import Config

logger = logging.getLogger("fastserve.error")


class AppImportError(Exception):
    """APP could not be found; the message is one line for the user."""


def import_from_string(spec: str) -> Any:
    module_name, _, attrs = spec.partition(":")
    if not module_name or not attrs:
        raise AppImportError(f'Import string "{spec}" must be in format "<module>:<attribute>".')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "the module itself is missing" is our one-line error; an import failing inside
        # the app's own code keeps its traceback, which the user needs.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppImportError(f'Could not import module "{module_name}".') from None
        raise
    obj: Any = module
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AppImportError(f'Attribute "{attrs}" not found in module "{module_name}".') from None
    return obj


def load_app(config: Config) -> Any:
    """The ASGI 3 callable to serve; AppImportError (one line) when APP cannot be one.

    Everything here happens before any socket is served, so a wrong APP is an exit status, not a
    server answering 500 to every request."""
    if config.env_file:
        logger.info("Loading environment from '%s'", config.env_file)
        load_env_file(config.env_file)
    app_dir = os.path.abspath(config.app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    app = import_from_string(config.app) if isinstance(config.app, str) else config.app
    if app is None:
        raise AppImportError("No application given.")
    name = config.app if isinstance(config.app, str) else repr(app)
    if config.factory:
        app = _call_factory(app, name)
    elif _looks_like_factory(app):
        logger.warning("APP %s takes no arguments: calling it as an application factory "
                       "(pass --factory to say so and silence this warning).", name)
        app = _call_factory(app, name)
    if not callable(app):
        raise AppImportError(f"APP {name} is not an ASGI application: {type(app).__name__} objects are not callable.")
    interface = config.interface if config.interface != "auto" else detect_interface(app)
    arguments = 1 if interface == "asgi2" else 3
    if not _can_take(app, arguments):
        wanted = "(scope)" if arguments == 1 else "(scope, receive, send)"
        raise AppImportError(f"APP {name} is not an ASGI application: it cannot be called with {wanted}.")
    if interface == "asgi2":
        app = ASGI2Middleware(app)
    return app


def _call_factory(factory: Any, name: str) -> Any:
    if not callable(factory):
        raise AppImportError(f"--factory: APP {name} is not callable.")
    try:
        return factory()
    except TypeError as exc:
        raise AppImportError(f"Error calling the application factory {name}: {exc}") from None


def _looks_like_factory(app: Any) -> bool:
    """A plain function (not a coroutine function, not a class) with no required argument."""
    if not (inspect.isfunction(app) or inspect.ismethod(app)) or inspect.iscoroutinefunction(app):
        return False
    return _can_take(app, 0) and not _can_take(app, 1)


def _can_take(app: Any, count: int) -> bool:
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return True  # a C callable without a signature: cannot tell, so trust it
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


def detect_interface(app: Any) -> str:
    """ASGI 2 apps are ``app(scope)`` returning an instance; ASGI 3 apps take three arguments."""
    if inspect.isclass(app):
        return "asgi3" if hasattr(app, "__await__") else "asgi2"
    # The __call__ method itself is inspected, not used to test callability.
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", app)  # noqa: B004
    if inspect.iscoroutinefunction(call):
        return "asgi3"
    try:
        params = [
            p for p in inspect.signature(call).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return "asgi3"
    return "asgi2" if len(params) == 1 else "asgi3"


class ASGI2Middleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def load_env_file(path: str) -> None:
    """KEY=VALUE lines, '#' comments, optional 'export ' and quotes; existing variables win."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise AppImportError(f"Could not read --env-file {path!r}: {exc.strerror}") from None
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        os.environ.setdefault(key, value)
