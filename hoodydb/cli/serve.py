"""`hoodydb serve`: the mount and the HTTP API together, or the API alone over plain directories."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
from pathlib import Path
from types import FrameType

import click
from click.core import ParameterSource

from hoodydb.api import cors
from hoodydb.api.config import DEFAULT_MAX_BODY_BYTES, ApiConfig
from hoodydb.api.tokens import accepted_tokens
from hoodydb.backup.binary import LitestreamMissing, locate
from hoodydb.cli.limit_options import limit_options, statement_timeout_for
from hoodydb.cli.options import configure_logging, list_option, mount_options, option
from hoodydb.control_client import socket_path
from hoodydb.fs.claim import ClaimError, probe
from hoodydb.fs.orphan import SERVE_PID_ENV, replace_orphan
from hoodydb.fs.process import MountError, MountProcess, this_program
from hoodydb.fs.settings import MountSettings, daemon_args, flag
from hoodydb.fs.supervise import SupervisedMount
from hoodydb.sql.connection import DEFAULT_BUSY_TIMEOUT_S, DEFAULT_STATEMENT_TIMEOUT_S
from hoodydb.sql.limits import SqlLimits
from hoodydb.sql.paths import Roots

_DIR = click.Path(file_okay=False, path_type=Path)
# The mount options that apply to serve itself too.
_SERVE_TOO = {"log_level", "debug"}


def _claim_mount(data: Path, mountpoint: Path) -> None:
    """Replace our own orphaned mount (a killed serve's child), refuse a tree served by another."""
    replace_orphan(data, mountpoint, lambda line: click.echo(f"hoodydb serve: {line}", err=True))
    probe(data)
    os.environ[SERVE_PID_ENV] = str(os.getpid())  # the mount child reports it: orphan.py


def _mount_flags_given() -> list[str]:
    """Mount options on the command line (the environment may well be shared with mounts)."""
    ctx = click.get_current_context()
    return [
        flag(f.name)
        for f in dataclasses.fields(MountSettings)
        if f.name not in _SERVE_TOO and ctx.get_parameter_source(f.name) is ParameterSource.COMMANDLINE
    ]


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)


@click.command()
@option("--data", type=_DIR, help="Backing directory: where the database files really live.")
@option("--mount", "mountpoint", type=_DIR, help="Mountpoint; the API opens databases through it.")
@option("--no-mount", is_flag=True, help="Serve plain directories (--root) without a mount.")
@list_option("--root", "roots", type=_DIR, help="With --no-mount: a directory to serve (repeatable).")
@option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Its port.")
@list_option(
    "--token",
    "tokens",
    help="Accepted bearer token (repeatable; local users can read a command line: prefer the "
    "environment or --token-file).",
)
@option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File of accepted tokens, one per line.",
)
@option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BODY_BYTES,
    show_default=True,
    help="Largest request body (then 413).",
)
@option(
    "--busy-timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_BUSY_TIMEOUT_S,
    show_default=True,
    help="SQLite's busy timeout on the API's connections.",
)
@option(
    "--statement-timeout",
    type=click.FloatRange(min=0.01),
    help=f"Longest transaction [default: {DEFAULT_STATEMENT_TIMEOUT_S:g}, kept below --lock-timeout].",
)
@list_option(
    "--cors-origin",
    "cors_origins",
    help="Browser origin allowed to call the API: https://app.example (repeatable).",
)
@limit_options
@mount_options
def serve(
    data: Path | None,
    mountpoint: Path | None,
    no_mount: bool,
    roots: tuple[Path, ...],
    host: str,
    port: int,
    tokens: tuple[str, ...],
    token_file: Path | None,
    max_body_bytes: int,
    busy_timeout: float,
    statement_timeout: float | None,
    cors_origins: tuple[str, ...],
    limits: SqlLimits,
    settings: MountSettings,
) -> None:
    """Run the HTTP API; with --data and --mount, run the mount too and serve databases through it.

    Stops on SIGTERM or SIGINT: the API first, then the mount is unmounted."""
    if no_mount:
        if not roots or mountpoint is not None:
            raise click.UsageError("--no-mount needs --root DIR (and no --mount)")
        if given := _mount_flags_given():
            raise click.UsageError(f"{', '.join(given)}: for the mount, and --no-mount runs none")
        for root in roots:
            root.mkdir(parents=True, exist_ok=True)
        served, state_base = list(roots), data or roots[0]
    else:
        if data is None or mountpoint is None or roots:
            raise click.UsageError("give --data DIR and --mount DIR (or --no-mount --root DIR)")
        data.mkdir(parents=True, exist_ok=True)
        served, state_base = [mountpoint], data
        if settings.replica:
            try:
                locate(settings.litestream)  # refused now, not in the mount's log
            except LitestreamMissing as exc:
                raise click.ClickException(str(exc)) from None
    configure_logging(settings)
    try:
        accepted, token_line = accepted_tokens(tokens, token_file, state_base)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    config = ApiConfig(
        roots=Roots(served),
        tokens=frozenset(accepted),
        max_body_bytes=max_body_bytes,
        busy_timeout=busy_timeout,
        statement_timeout=statement_timeout_for(
            statement_timeout, settings.lock_timeout, mounted=not no_mount
        ),
        cors_origins=cors.origins_from(cors_origins),
        control_socket=None if no_mount else socket_path(served[0]),
        limits=limits,
        state_base=state_base,
    )
    # Until Hypercorn installs its own handlers, a stop signal must still unwind the ExitStack
    # (and so unmount) rather than kill this process and leave the mount behind.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    with contextlib.ExitStack() as stack:
        if not no_mount:
            assert data is not None and mountpoint is not None
            try:
                # The mount is a child process: the API must never run inside the FUSE daemon.
                # Its own session: Ctrl-C in the terminal reaches only serve, which drains the
                # API and then stops the mount, instead of both stopping at once.
                _claim_mount(data, mountpoint)
                args = daemon_args(settings)
                mount = SupervisedMount(
                    lambda: MountProcess(
                        data, mountpoint, extra_args=args, detach=True, program=this_program()
                    ),
                    on_give_up=lambda: os.kill(os.getpid(), signal.SIGTERM),
                )
                # Stopped on the way out even if a stop signal cuts its start short.
                stack.callback(mount.stop)
                mount.start()
            except (MountError, ClaimError) as exc:
                raise click.ClickException(str(exc)) from None
        shown_host = f"[{host}]" if ":" in host else host
        click.echo(f"hoodydb API on http://{shown_host}:{port}  (serving {', '.join(map(str, served))})")
        click.echo(token_line)
        sys.stdout.flush()
        from hoodydb.api.server import run  # Starlette and Hypercorn load only for this command

        run(config, host=host, port=port)
