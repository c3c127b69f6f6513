"""`hoodydb serve`'s options for the bounds of every request, gathered into one `SqlLimits`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from hoodydb.cli.options import option
from hoodydb.sql import limits as defaults
from hoodydb.sql.connection import DEFAULT_STATEMENT_TIMEOUT_S
from hoodydb.sql.limits import SqlLimits

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    ("--max-value-bytes", "max_value_bytes", defaults.DEFAULT_MAX_VALUE_BYTES, "Longest string or blob."),
    (
        "--max-like-pattern-bytes",
        "max_like_pattern_bytes",
        defaults.DEFAULT_MAX_LIKE_PATTERN_BYTES,
        "Longest LIKE/GLOB pattern.",
    ),
    ("--max-result-rows", "max_result_rows", defaults.DEFAULT_MAX_RESULT_ROWS, "Most rows in one response."),
    (
        "--max-result-bytes",
        "max_result_bytes",
        defaults.DEFAULT_MAX_RESULT_BYTES,
        "Largest response (estimated).",
    ),
    (
        "--max-queue",
        "max_queue",
        defaults.DEFAULT_MAX_QUEUE,
        "Most requests waiting per database (then 503).",
    ),
]


def limit_options(command: F) -> F:
    """Add the limit options; the command receives `limits: SqlLimits` instead."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for _, name, _, _ in _OPTIONS}
        return command(*args, limits=SqlLimits(**given), **kwargs)

    for flag, name, default, help_text in reversed(_OPTIONS):
        wrapper = option(
            flag, name, type=click.IntRange(min=1), default=default, show_default=True, help=help_text
        )(wrapper)
    return wrapper  # type: ignore[return-value]


def statement_timeout_for(given: float | None, lock_timeout: float, *, mounted: bool) -> float:
    """The statement timeout: as given, else the default kept below the mount's lock timeout.

    An HTTP reader holding a database past the lock timeout would make a native writer waiting
    behind it fail, so the default is two thirds of a lower `--lock-timeout`, and a given value
    must stay below the mount's. Without a mount there is no lock timeout to stay below.
    """
    if given is not None:
        if mounted and given >= lock_timeout:
            raise click.UsageError("--statement-timeout must be below --lock-timeout")
        return given
    if not mounted:
        return DEFAULT_STATEMENT_TIMEOUT_S
    return min(DEFAULT_STATEMENT_TIMEOUT_S, lock_timeout * 2 / 3)
