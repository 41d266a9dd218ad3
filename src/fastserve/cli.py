"""The ``fastserve`` command, generated from the option table in ``config.py``.

Also keeps uvicorn command lines working where the meaning is the same (see ``uvicorn_compatible``)
and says plainly what to use instead where it is not.
"""

from __future__ import annotations

import os
import platform
import sys

import click
from click.core import ParameterSource

from . import __version__
from .config import Config, ConfigError, default_of, option_fields

ENV_PREFIX = "FASTSERVE"

# Help sections, in the order shown: what people reach for first comes first.
GROUP_TITLES = {
    "socket": "Address",
    "reload": "Development (--reload)",
    "workers": "Processes (--workers)",
    "app": "Application",
    "logging": "Logging",
    "impl": "Implementation",
    "http": "HTTP",
    "ws": "WebSocket",
    "http2": "HTTP/2",
    "tls": "TLS",
}

# uvicorn options with no fastserve equivalent, and what to do instead.
UVICORN_ONLY_OPTIONS = {
    "--ssl-version": "fastserve uses Python's TLS defaults (TLS 1.2 and later); limit ciphers with --ssl-ciphers",
    "--h11-max-incomplete-event-size": "use --limit-request-headers-size (it bounds the request head for both parsers)",
}
# uvicorn choice values: the same thing under another name, or what to do instead.
UVICORN_VALUES = {
    ("--ws", "websockets-sansio"): "websockets",  # fastserve's engine is websockets' sans-I/O protocol
}
UVICORN_VALUE_HINTS = {
    ("--ws", "wsproto"): "fastserve's WebSocket engine is websockets: use --ws websockets (or auto)",
    ("--loop", "none"): "fastserve always creates its event loop: use --loop auto, asyncio or uvloop",
    ("--interface", "wsgi"): "fastserve serves ASGI only: wrap a WSGI app (e.g. asgiref's WsgiToAsgi)",
}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class HeaderType(click.types.StringParamType):
    """--header values contain spaces: FASTSERVE_HEADERS takes one NAME:VALUE per line."""

    name = "NAME:VALUE"
    envvar_list_splitter = "\n"


class FastserveOption(click.Option):
    """Errors say ``--option: problem``, and where a value came from the environment, which variable."""

    group = "other"  # the --help section it is listed in (the option table's group)

    def process_value(self, ctx: click.Context, value):
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as exc:
            message = exc.message.rstrip(".")
            raise click.UsageError(f"{self.opts[0]}: {message}{environment_note(ctx, self)}.", ctx) from None


def environment_note(ctx: click.Context, param: click.Parameter) -> str:
    if ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return ""
    names = param.envvar if isinstance(param.envvar, (list, tuple)) else [param.envvar or f"{ENV_PREFIX}_{param.name.upper()}"]
    name = next((n for n in names if n in os.environ), names[0])
    return f" (from the environment variable {name})"


def _click_option(f) -> click.Option:
    meta = f.metadata
    flag = meta["flag"] or "--" + f.name.replace("_", "-")
    default = default_of(f.name)
    kwargs: dict = {"help": meta["help"], "default": default, "show_default": default not in (None, "", [], ())}
    envvars = list(meta["envvar"]) or [f"{ENV_PREFIX}_{f.name.upper()}"]
    if meta["multiple"] and meta["flag"]:
        # The variable is named after the setting (FASTSERVE_HEADERS); the flag's spelling
        # (FASTSERVE_HEADER) is accepted too, since that is what people try first.
        envvars.append(f"{ENV_PREFIX}_{meta['flag'][2:].replace('-', '_').upper()}")
    kwargs["envvar"] = envvars
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    if meta["is_flag"]:
        decls = [flag]
        kwargs["is_flag"] = True
    elif isinstance(default, bool) or meta["type"] is bool:
        decls = [f"{flag}/--no-{flag[2:]}"]
        kwargs["show_default"] = default is not None
    elif meta["choices"]:
        decls = [flag]
        kwargs["type"] = click.Choice(meta["choices"])
    elif meta["multiple"]:
        decls = [flag]
        kwargs["multiple"] = True
        kwargs["default"] = tuple(default)
        if f.name == "headers":
            kwargs["type"] = HeaderType()
    else:
        decls = [flag]
        kwargs["type"] = meta["type"] or type(default)
    option = FastserveOption([*decls, f.name], **kwargs)
    option.group = meta["group"]
    return option


def _main(app: str, **options) -> None:
    from .main import run

    ctx = click.get_current_context()
    try:
        config = Config(app=app, **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()})
    except ConfigError as exc:
        param = next((p for p in ctx.command.params if p.name == exc.option), None)
        note = environment_note(ctx, param) if param is not None else ""
        raise click.UsageError(f"{exc}{note}") from None
    sys.exit(run(config))


class FastserveCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            args = uvicorn_compatible(args, self.params)
        except click.UsageError as exc:
            exc.ctx = ctx
            raise
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Options in their groups (the option table's ``group``), in GROUP_TITLES order."""
        sections: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                sections.setdefault(getattr(param, "group", "other"), []).append(record)
        for group in [*GROUP_TITLES, *sections]:
            records = sections.pop(group, None)
            if records:
                with formatter.section(GROUP_TITLES.get(group, "Other options")):
                    formatter.write_dl(records)


def uvicorn_compatible(args: list[str], params: list[click.Parameter]) -> list[str]:
    """uvicorn spellings with the same meaning: ``--flag true|false`` (uvicorn takes a value for
    --ws-per-message-deflate) and ``--flag=false``; renamed choice values. Options uvicorn has and
    fastserve has not are a usage error that says what to use instead."""
    switches = {opt for p in params if isinstance(p, click.Option) and p.secondary_opts for opt in p.opts}
    result: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return result + args[i:]
        name, eq, value = arg.partition("=")
        if name in UVICORN_ONLY_OPTIONS:
            raise click.UsageError(f"{name} is a uvicorn option fastserve does not have: {UVICORN_ONLY_OPTIONS[name]}.")
        if name in switches:
            if not eq and i + 1 < len(args) and args[i + 1].lower() in _TRUE + _FALSE:
                eq, value = "=", args[i + 1]
                i += 1
            if eq:
                if value.lower() not in _TRUE + _FALSE:
                    raise click.UsageError(f"{name}: expected true or false; got {value!r}")
                arg = name if value.lower() in _TRUE else "--no-" + name[2:]
        elif eq or i + 1 < len(args):
            choice = value if eq else args[i + 1]
            hint = UVICORN_VALUE_HINTS.get((name, choice))
            if hint:
                raise click.UsageError(f"{name}: {choice!r} is uvicorn's; {hint}.")
            renamed = UVICORN_VALUES.get((name, choice))
            if renamed:
                if eq:
                    arg = f"{name}={renamed}"
                else:
                    result.append(arg)
                    arg, i = renamed, i + 1
        result.append(arg)
        i += 1
    return result


def environment_epilog(params: list[click.Parameter]) -> str:
    repeatable = [p for p in params if getattr(p, "multiple", False)]
    names = ", ".join(p.envvar[0] for p in repeatable)
    return (
        f"Every option can also be set with an environment variable: {ENV_PREFIX}_ and the option's "
        f"name in capitals with _ for - (e.g. FASTSERVE_PORT=8080, FASTSERVE_RELOAD=true); the "
        f"command line wins. APP can be given as FASTSERVE_APP. Repeatable options take several "
        f"values separated by spaces: {names} (FASTSERVE_HEADERS: one NAME:VALUE per line; the "
        f"singular spellings such as FASTSERVE_HEADER work too). Also read: WEB_CONCURRENCY "
        f"(--workers) and FORWARDED_ALLOW_IPS. Exit statuses: 0 stopped normally; 1 address or TLS "
        f"problem; 2 bad option; 3 APP could not be loaded or its lifespan startup failed."
    )


def print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from .compiled import build_kind

    click.echo(f"fastserve {__version__} ({build_kind()}) with {platform.python_implementation()} "
               f"{platform.python_version()} on {platform.system()}")
    ctx.exit()


def build_command() -> click.Command:
    params: list[click.Parameter] = [click.Argument(["app"], envvar=f"{ENV_PREFIX}_APP")]
    params += [_click_option(f) for f in option_fields()]
    version = FastserveOption(["--version"], is_flag=True, expose_value=False, is_eager=True,
                           callback=print_version, help="Show the version and exit.")
    version.group = "other"
    params.append(version)
    return FastserveCommand(
        "fastserve",
        callback=_main,
        params=params,
        help="Serve the ASGI application APP, given as module:attribute (e.g. myproject.asgi:application).",
        epilog=environment_epilog(params),
        context_settings={"auto_envvar_prefix": ENV_PREFIX, "help_option_names": ["-h", "--help"]},
    )


main = build_command()
