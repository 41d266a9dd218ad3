"""Which ASGI application a Django project serves."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


def get_default_application() -> Any:
    """``settings.ASGI_APPLICATION`` (as Channels and daphne read it) when set, else Django's
    ASGI handler (what a project's ``asgi.py`` made by ``startproject`` returns), in the subclass
    that lets fastserve send a FileResponse's file itself (handler.py)."""
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        from .handler import get_asgi_application

        return get_asgi_application()
    try:
        return import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"ASGI_APPLICATION {path!r} cannot be imported: {exc}") from exc


def with_static_files(app: Any) -> Any:
    """Serve ``STATIC_URL`` from the staticfiles finders in front of ``app``, as Django's own
    ``runserver`` does in DEBUG; WebSocket scopes and other paths go to ``app``."""
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    return ASGIStaticFilesHandler(app)
