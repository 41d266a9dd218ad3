"""``manage.py runserver`` on fastserve: Django's command line, banner and checks; fastserve serves.

The management process parses the options as Django's ``runserver`` (and staticfiles' variant)
does and binds the address (a port in use gets Django's message), then hands over to fastserve.
With the reloader (the default) it becomes fastserve's ``--reload`` supervisor: it runs the
project in a fresh child process that inherits the listening socket, and replaces the child when a
file under the project changes, so a browser never sees a refused connection during a reload. The
child (``fastserve.django.devserver``) does what Django's ``inner_run`` does in its reloaded
process: system checks, the migrations warning and the banner, then serves ``ASGI_APPLICATION``
(or Django's ASGI handler), behind ``ASGIStaticFilesHandler`` when static files are to be served.
A child that fails (a syntax error just saved, a failing system check) prints why and the
supervisor waits for the next save.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import Command as StaticfilesRunserver
from django.core.management.base import CommandError
from django.db import connections

import fastserve

# The management process hands the parsed options to the server process(es) in this variable:
# children are fresh interpreters that inherit the environment.
OPTIONS_ENV = "FASTSERVE_DJANGO_RUNSERVER"
CHILD_APP = "fastserve.django.devserver:application"
# Django's own words for the usual bind failures.
BIND_ERRORS = {
    errno.EACCES: "You don't have permission to access that port.",
    errno.EADDRINUSE: "That port is already in use.",
    errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
}
# Besides Python files: templates, which Django's own reloader also picks up.
EXTRA_RELOAD_INCLUDES = ["*.html"]


class Command(StaticfilesRunserver):
    # Options as Django's: addrport, -6/--ipv6, --noreload, --nostatic, --insecure, --skip-checks;
    # --nothreading is accepted and has no effect (an asyncio server).
    addr: str  # set by Django's handle() from addrport, as a string like the port
    port: str
    help = "Starts the fastserve ASGI development server (HTTP and WebSocket), with code reload and static files."

    # -- the management process ---------------------------------------------------------------
    def run(self, **options: Any) -> None:
        fd = self.bind().detach()  # fastserve owns the socket from here on
        os.environ[OPTIONS_ENV] = json.dumps(self.child_options(options))
        config = fastserve.Config(
            app=CHILD_APP,
            factory=True,
            fd=fd,
            reload=options["use_reloader"],
            reload_dirs=self.watched_dirs(),
            reload_includes=EXTRA_RELOAD_INCLUDES,
        )
        fastserve.run(config)

    def child_options(self, options: dict) -> dict:
        return {
            "addr": self.addr,
            "port": self.port,
            "raw_ipv6": self._raw_ipv6,
            "use_ipv6": self.use_ipv6,
            "skip_checks": options["skip_checks"],
            "use_static_handler": options["use_static_handler"],
            "insecure_serving": options["insecure_serving"],
        }

    def bind(self) -> socket.socket:
        """Bind here, before fastserve starts, to answer with Django's messages for a port in use
        and to know the port when it is 0 (any free one)."""
        host = "0.0.0.0" if self.addr == "0" else self.addr
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host, int(self.port)))
        except OSError as exc:
            sock.close()
            raise CommandError(BIND_ERRORS.get(exc.errno, str(exc))) from None
        self.port = str(sock.getsockname()[1])
        return sock

    def watched_dirs(self) -> list[str]:
        """The project: BASE_DIR as ``startproject`` sets it, else the current directory."""
        base = getattr(settings, "BASE_DIR", None)
        if base and Path(base).is_dir():
            return [str(base)]
        return [os.getcwd()]

    # -- the server process (see fastserve.django.devserver) ----------------------------------
    @classmethod
    def from_child_options(cls, options: dict) -> Command:
        command = cls()
        command.addr, command.port = options["addr"], options["port"]
        command._raw_ipv6, command.use_ipv6 = options["raw_ipv6"], options["use_ipv6"]
        command.child_options_ = options
        return command

    def prepare(self) -> None:
        """Django's ``inner_run`` up to serving: checks, the migrations warning, the banner.
        Runs in a thread: the server's event loop is running, and Django's database access
        refuses an async context."""
        options = self.child_options_
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        for conn in connections.all(initialized_only=True):
            conn.close()
        self.print_banner()

    def print_banner(self) -> None:
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        addr = f"[{self.addr}]" if self._raw_ipv6 else ("0.0.0.0" if self.addr == "0" else self.addr)
        now = datetime.now().strftime("%B %d, %Y - %X")
        self.stdout.write(
            f"{now}\n"
            f"Django version {self.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting ASGI/fastserve version {fastserve.__version__} development server at {self.protocol}://{addr}:{self.port}/\n"
            f"Quit the server with {quit_command}."
        )
        self.stdout.flush()  # before fastserve's log lines, also when stdout is a pipe (an IDE)

    def get_application(self) -> Any:
        from ...application import get_default_application, with_static_files

        app = get_default_application()
        options = self.child_options_
        if (
            options["use_static_handler"]
            and (settings.DEBUG or options["insecure_serving"])
            and apps.is_installed("django.contrib.staticfiles")
        ):
            app = with_static_files(app)
        return app

