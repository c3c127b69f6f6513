"""Options shared by the commands that talk to the HTTP API, defined once as decorators."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from hoodydb.cli.options import option
from hoodydb.client import DEFAULT_URL, HoodyClient, HoodyHttpError

F = TypeVar("F", bound=Callable[..., Any])


def api_options(command: F) -> F:
    """Add --url and --token; the command receives a ready `client: HoodyClient` instead."""

    @option("--url", default=DEFAULT_URL, show_default=True, help="API base URL.")
    @option("--token", help="Bearer token (see `hoodydb serve`'s output).")
    @option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for an answer.")
    @functools.wraps(command)
    def wrapper(*args: Any, url: str, token: str | None, timeout: float, **kwargs: Any) -> Any:
        with HoodyClient(url, token, timeout=timeout) as client:
            return command(*args, client=client, **kwargs)

    return wrapper  # type: ignore[return-value]


db_option = click.option(
    "--db", required=True, help="Database: a path relative to the served root, or absolute under it."
)


def json_argument(value: str, what: str) -> Any:
    """Parse JSON given inline, as `@FILE`, or as `-` (stdin)."""
    if value == "-":
        value = sys.stdin.read()
    elif value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as f:
                value = f.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc.strerror}", param_hint=what) from None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=what) from None


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn an API error into the message on stderr and exit status 1."""
    try:
        yield
    except HoodyHttpError as exc:
        raise click.ClickException(str(exc)) from None
