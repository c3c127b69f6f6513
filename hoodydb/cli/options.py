"""How every configuration option is declared: a flag, and the same setting as `HOODYDB_<NAME>`.

The environment variable is the flag's name in capitals with the one prefix (`--lock-timeout`,
`HOODYDB_LOCK_TIMEOUT`); a repeatable option takes the plural and a comma-separated list
(`--token`, `HOODYDB_TOKENS`). A flag beats the environment, which beats the default. The mount's
options come from `MountSettings`, for `hoodydb mount` and `hoodydb serve` alike.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

import click

from hoodydb.fs.settings import MountSettings, env_var, flag, no_flag

F = TypeVar("F", bound=Callable[..., Any])


def option(*decls: str, envvar: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """A click option whose environment variable is named after its flag, shown in --help."""
    long = next(d for d in decls if d.startswith("--")).split("/")[0]
    name = envvar or env_var(long[2:].replace("-", "_"))
    return click.option(*decls, envvar=name, show_envvar=True, **kwargs)


def list_option(
    decl: str, name: str, *, type: click.ParamType[Any] = click.STRING, **kwargs: Any
) -> Callable[[F], F]:
    """A repeatable option; its environment variable, in the plural, holds a comma-separated list."""
    split = _CommaSeparated(type)
    return option(
        decl, name, envvar=env_var(decl[2:].replace("-", "_")) + "S", multiple=True, type=split, **kwargs
    )


class _CommaSeparated(click.ParamType):  # type: ignore[type-arg]  # (older click: not generic)
    """`type`, but an environment variable's list is split at commas, not blanks (or colons)."""

    def __init__(self, inner: click.ParamType[Any]) -> None:
        self.inner = inner
        self.name = inner.name

    def split_envvar_value(self, rv: str) -> list[str]:
        return [item.strip() for item in rv.split(",") if item.strip()]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return self.inner.convert(value, param, ctx)


def mount_options(command: F) -> F:
    """Add an option for each `MountSettings` field; the command receives `settings` instead."""
    fields = dataclasses.fields(MountSettings)
    enums = {f.name: type(f.default) for f in fields if isinstance(f.default, Enum)}

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {f.name: kwargs.pop(f.name) for f in fields}
        given.update({name: enum(given[name]) for name, enum in enums.items()})
        return command(*args, settings=MountSettings(**given), **kwargs)

    for f in reversed(fields):
        decl = f"{flag(f.name)}/{no_flag(f.name)}" if isinstance(f.default, bool) else flag(f.name)
        wrapper = option(
            decl,
            f.name,
            type=f.metadata["type"],
            default=f.default.value if isinstance(f.default, Enum) else f.default,
            show_default=True,
            help=f.metadata["help"],
            hidden=f.metadata["hidden"],
        )(wrapper)
    return wrapper  # type: ignore[return-value]


def configure_logging(settings: MountSettings) -> None:
    """Log to stderr at the settings' level; --debug also turns on libfuse's request trace."""
    level = "DEBUG" if settings.debug else settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("fuse").setLevel(logging.DEBUG if settings.debug else logging.WARNING)
