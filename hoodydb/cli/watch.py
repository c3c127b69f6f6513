"""`hoodydb watch`: the mount's commit feed in the terminal, through its control socket."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import click

from hoodydb import control_client


def _socket(mountpoint: str | None) -> Path:
    if mountpoint:
        return control_client.socket_path(mountpoint)
    sockets = list(control_client.all_sockets())
    if len(sockets) != 1:
        found = "no hoodydb mount" if not sockets else f"{len(sockets)} hoodydb mounts"
        raise click.ClickException(f"{found} on this machine: name the MOUNTPOINT")
    return sockets[0]


def format_event(event: dict[str, Any]) -> str | None:
    """One line per commit or gap; None for what a person need not see (start, heartbeat)."""
    if event["type"] == "commit":
        at = datetime.datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S.%f")[:-3]
        token = f"  (token {event['token']})" if event.get("token") else ""
        return (
            f"{at}  {event['db']}  #{event['seq']}  {event['pages']} pages  "
            f"pid {event['pid']}  {event['command']}{token}"
        )
    if event["type"] == "missed":
        return f"missed {event['count']} commits of {event['db']} (#{event['first']}..#{event['last']})"
    if event["type"] == "error":
        raise click.ClickException(event["message"])
    return None


@click.command()
@click.argument("mountpoint", required=False, type=click.Path(file_okay=False))
@click.option(
    "--db", "glob", default="*", show_default=True, help="Databases to follow (glob, path in the mount)."
)
@click.option(
    "--since", type=click.IntRange(min=0), help="Start after this sequence number (default: from now on)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, heartbeats included.")
def watch(mountpoint: str | None, glob: str, since: int | None, as_json: bool) -> None:
    """Follow every commit to the mount's databases, from every writer, as it happens.

    Each line: the time, the database, its commit sequence number, the pages written, and the
    writing process. Without MOUNTPOINT, the one mount of this machine. Stops with Ctrl-C."""
    path = _socket(mountpoint)
    try:
        for event in control_client.watch(path, glob.removeprefix("/"), since):
            if as_json:
                click.echo(json.dumps(event))
            elif (line := format_event(event)) is not None:
                click.echo(line)
    except OSError as exc:
        raise click.ClickException(f"no hoodydb mount answers for {mountpoint or path} ({exc})") from None
    except KeyboardInterrupt:
        return
    raise click.ClickException("the mount went away")
