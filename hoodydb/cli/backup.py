"""`hoodydb restore` and `hoodydb backup status`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from hoodydb import control_client
from hoodydb.backup.binary import LitestreamMissing
from hoodydb.backup.litestream_config import ReplicaUrl
from hoodydb.cli.options import option


@click.command()
@option("--replica", type=ReplicaUrl(), required=True, help="The replica URL the mount was given.")
@click.option("--db", "name", required=True, help="The database, as the tree names it: team/app.db.")
@click.option("--timestamp", help="Restore the state at this ISO-8601 time (UTC without an offset).")
@option("--litestream", default="", help="The Litestream binary (default: the one installed with hoodydb).")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def restore(replica: str, name: str, timestamp: str | None, litestream: str, output: Path) -> None:
    """Restore database --db from --replica into OUTPUT (a new file: never overwritten).

    To put it back into a served tree, stop the writers of that database, or restore beside it and
    rename it over the original (`mv` is atomic on one file system)."""
    from hoodydb.backup.restore import RestoreError, parse_time
    from hoodydb.backup.restore import restore as run_restore

    try:
        moment = parse_time(timestamp) if timestamp else None
        run_restore(replica=replica, name=name, output=output, timestamp=moment, binary=litestream)
    except (RestoreError, LitestreamMissing) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {name} to {output}")


@click.group()
def backup() -> None:
    """Continuous backup (Litestream, started by `--replica`)."""


@backup.command()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(mountpoint: str, as_json: bool) -> None:
    """Per database of the mount at MOUNTPOINT: the last replicated transaction and its time, the lag
    behind the live database, errors; databases that are not replicated, and why."""
    try:
        report = control_client.query(control_client.socket_path(mountpoint))["backup"]
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"no hoodydb mount answers for {mountpoint} ({exc})") from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(format_status(report))


def format_status(report: dict[str, Any]) -> str:
    if not report.get("replica"):
        return "no replica configured (--replica / HOODYDB_REPLICA): nothing is backed up"
    ls = report["litestream"]
    state = f"running, pid {ls['pid']}" if ls["running"] else "not running"
    lines = [f"replica {report['replica']}  (Litestream {state}, restarts {ls['restarts']})"]
    if ls.get("last_error"):
        lines.append(f"  last error: {ls['last_error']} ({ls['errors']} errors)")
    if not report["databases"]:
        lines.append("  no SQLite databases in the tree yet")
    for db in report["databases"]:
        if not db["replicated"]:
            lines.append(f"  {db['database']}  NOT REPLICATED: {db['reason']}")
            continue
        stale = "  STALE" if db.get("stale") else ""
        lines.append(
            f"  {db['database']}  txid {db.get('replicated_txid', 0)} of {db.get('txid', 0)} replicated, "
            f"at {db.get('replicated_at') or 'never'}, lag {db.get('lag_seconds', 0):.1f}s, "
            f"errors {db.get('errors', 0)}{stale}"
        )
        if db.get("last_error"):
            lines.append(f"    last error: {db['last_error']}")
    return "\n".join(lines)
