"""The application ``manage.py runserver`` serves: built in each server process (fastserve's
reload child, or the management process itself with ``--noreload``) from the options the command
left in the environment. See ``management/commands/runserver.py``."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from django.core.management.base import SystemCheckError


def application() -> Any:
    """The application factory (``fastserve.Config(factory=True)``)."""
    from .management.commands.runserver import OPTIONS_ENV, Command

    django.setup(set_prefix=False)
    command = Command.from_child_options(json.loads(os.environ[OPTIONS_ENV]))
    with ThreadPoolExecutor(1, thread_name_prefix="django-checks") as pool:
        try:
            pool.submit(command.prepare).result()
        except SystemCheckError as exc:
            # The checks' own report says it all; a traceback would only bury it.
            command.stderr.write(str(exc))
            sys.exit(1)
    return command.get_application()
