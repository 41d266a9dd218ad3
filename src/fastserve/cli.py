"""The ``fastserve`` command, generated from the option table in ``config.py``."""

from __future__ import annotations

import sys

import click

from . import __version__
from .config import Config, ConfigError, default_of, option_fields


def _click_option(f) -> click.Option:
    meta = f.metadata
    flag = meta["flag"] or "--" + f.name.replace("_", "-")
    default = default_of(f.name)
    kwargs: dict = {"help": meta["help"], "default": default, "show_default": default not in (None, "", [], ())}
    if meta["envvar"]:
        kwargs["envvar"] = list(meta["envvar"])
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    if meta["is_flag"]:
        decls = [flag]
        kwargs["is_flag"] = True
    elif isinstance(default, bool):
        decls = [f"{flag}/--no-{flag[2:]}"]
    elif meta["choices"]:
        decls = [flag]
        kwargs["type"] = click.Choice(meta["choices"])
    elif meta["multiple"]:
        decls = [flag]
        kwargs["multiple"] = True
        kwargs["default"] = tuple(default)
    else:
        decls = [flag]
        kwargs["type"] = meta["type"] or type(default)
    return click.Option([*decls, f.name], **kwargs)


def _main(app: str, **options) -> None:
    from .main import run

    try:
        config = Config(app=app, **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(run(config))


def build_command() -> click.Command:
    params: list[click.Parameter] = [click.Argument(["app"], envvar="FASTSERVE_APP")]
    params += [_click_option(f) for f in option_fields()]
    command = click.Command(
        "fastserve",
        callback=_main,
        params=params,
        help="Serve the ASGI application APP, given as module:attribute.",
        context_settings={"auto_envvar_prefix": "FASTSERVE", "help_option_names": ["-h", "--help"]},
    )
    click.version_option(__version__, "--version", prog_name="fastserve")(command)
    return command


main = build_command()
