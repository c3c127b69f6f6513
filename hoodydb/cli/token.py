"""`hoodydb token create/list/revoke`: scoped API tokens, kept hashed under DATA/.hoodydb/.

These commands work on the files directly (no server needed); a running `hoodydb serve` over the
same data directory picks up every change on its next request.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from hoodydb.access import store
from hoodydb.access.scope import scope_summary

_DATA = click.option(
    "--data",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The data directory `hoodydb serve` uses (--data; with --no-mount, its first --root).",
)
_DURATION = re.compile(r"([0-9]+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in `30m`, `12h`, `7d`, `2w` (one number and one unit)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise click.BadParameter(f"{text!r}: use a number and a unit, as 90s, 30m, 12h, 7d or 2w")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _when(epoch: float | None, never: str) -> str:
    if epoch is None:
        return never
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group()
def token() -> None:
    """Scoped API tokens: read-only, per database, KV-only, expiring, revocable."""


@token.command("create")
@_DATA
@click.option("--name", required=True, help="A name to list and revoke the token by.")
@click.option("--read-only", is_flag=True, help="Queries and KV reads only: SQLite refuses every write.")
@click.option(
    "--db",
    "databases",
    multiple=True,
    help="Only databases matching this glob, relative to the served root (repeatable; "
    "* and ? stay in one directory, ** crosses them).",
)
@click.option("--kv-only", is_flag=True, help="Only the key-value routes.")
@click.option("--expires", help="Lifetime: 90s, 30m, 12h, 7d, 2w (default: until revoked).")
def create(
    data: Path, name: str, read_only: bool, databases: tuple[str, ...], kv_only: bool, expires: str | None
) -> None:
    """Create a token and print it (the only time it is shown: only its hash is stored)."""
    now = time.time()
    expires_at = None if expires is None else now + parse_duration(expires)
    try:
        secret = store.create_token(
            data,
            name=name,
            read_only=read_only,
            databases=databases,
            kv_only=kv_only,
            expires_at=expires_at,
            now=now,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(secret)


@token.command("list")
@_DATA
def list_tokens(data: Path) -> None:
    """Names, scopes, expiry and last use of every token (never the token itself)."""
    try:
        records = store.load_records(store.tokens_path(data))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    last_use = store.read_last_use(data)
    now = time.time()
    for r in records:
        if r.revoked_at is not None:
            state = f"revoked {_when(r.revoked_at, '')}"
        elif r.expires_at is not None and r.expires_at <= now:
            state = f"expired {_when(r.expires_at, '')}"
        else:
            state = f"expires {_when(r.expires_at, 'never')}"
        used = _when(last_use.get(r.id), "never")
        click.echo(
            f"{r.name}\t{scope_summary(r.read_only, r.databases, r.kv_only)}\t{state}\tlast used {used}"
        )


@token.command("revoke")
@_DATA
@click.argument("name")
def revoke(data: Path, name: str) -> None:
    """Revoke the token called NAME; a running server refuses it from its next request on."""
    if not store.revoke_token(data, name, now=time.time()):
        raise click.ClickException(f"no live token named {name!r}")
    click.echo(f"revoked {name}")
