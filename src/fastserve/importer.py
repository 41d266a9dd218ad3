"""Loading the application: "module:attr" strings, factories, .env files, ASGI 2 detection."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from .config import Config


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
    if config.env_file:
        load_env_file(config.env_file)
    app_dir = os.path.abspath(config.app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    app = import_from_string(config.app) if isinstance(config.app, str) else config.app
    if app is None:
        raise AppImportError("No application given.")
    if config.factory:
        try:
            app = app()
        except TypeError as exc:
            raise AppImportError(f"Error calling the application factory: {exc}") from None
    interface = config.interface if config.interface != "auto" else detect_interface(app)
    if interface == "asgi2":
        app = ASGI2Middleware(app)
    return app


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
