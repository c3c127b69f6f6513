"""`hoodydb mount` and `hoodydb locks`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hoodydb import control_client
from hoodydb.cli.options import configure_logging, mount_options, option
from hoodydb.fs.process import MountError, MountProcess, this_program
from hoodydb.fs.settings import MountSettings, daemon_args


@click.command()
@click.argument("backing", type=click.Path(file_okay=False, path_type=Path))
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@option("--foreground", is_flag=True, help="Stay attached (default: detach once mounted).")
@mount_options
def mount(backing: Path, mountpoint: Path, foreground: bool, settings: MountSettings) -> None:
    """Mount BACKING at MOUNTPOINT: SQLite files opened under MOUNTPOINT are safe to write from many
    processes at once. SIGINT or SIGTERM unmounts."""
    from hoodydb.fs.mount import MountConfigError, MountOptions, preflight, run

    opts = MountOptions(backing=backing, mountpoint=mountpoint, settings=settings)
    try:
        if not foreground:
            preflight(opts)
            log = control_client.socket_path(mountpoint).with_suffix(".log")
            child = MountProcess(
                backing,
                mountpoint,
                extra_args=daemon_args(settings),
                detach=True,
                stderr_path=log,
                program=this_program(),
            ).start()
            click.echo(f"mounted {backing} at {mountpoint} (pid {child.pid}, log {log})")
            return
        configure_logging(settings)
        run(opts)
    except (MountConfigError, MountError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.argument("mountpoint", required=False, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def locks(mountpoint: str | None, as_json: bool) -> None:
    """Show, per database, who holds the turn, who waits, and the counters.

    Without MOUNTPOINT, every mount of this machine that this user can see."""
    sockets = [control_client.socket_path(mountpoint)] if mountpoint else list(control_client.all_sockets())
    reports = []
    for path in sockets:
        try:
            reports.append(control_client.query(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)  # left by a daemon that was killed
        except OSError as exc:
            if mountpoint:
                raise click.ClickException(f"no hoodydb mount answers for {mountpoint} ({exc})") from None
    if mountpoint and not reports:
        raise click.ClickException(f"no hoodydb mount answers for {mountpoint}")
    if as_json:
        click.echo(json.dumps(reports if not mountpoint else reports[0], indent=2))
        return
    if not reports:
        click.echo("no hoodydb mounts")
    for report in reports:
        click.echo(_format(report))


SHOWN_WAITERS = 10


def _format(report: dict) -> str:  # type: ignore[type-arg]
    pinned = report.get("pinned_to_cpu")
    where = "" if pinned is None else f", on CPU {pinned} while clients queue"
    lines = [f"{report['mountpoint']}  (daemon pid {report['pid']}, policy {report['policy']}{where})"]
    parked = report.get("parked")
    if parked:
        refused = f", {parked['refused']} refused at the bound" if parked["refused"] else ""
        lines.append(
            f"  parked lock requests: {parked['now']} now, {parked['peak']} at most, bound {parked['bound']} "
            f"({report.get('threads')} worker threads){refused}"
        )
    for db in report["databases"]:
        c = db["counters"]
        lines.append(
            f"  {db['database']}  [{db['mode']}]  transactions={c['transactions']} waits={c['waits']} "
            f"timeouts={c['timeouts']} interrupts={c['interrupts']} turn held {c['turn_seconds']:.1f}s"
        )
        admitted = db["admitted"]
        if admitted:
            extra = f" ({admitted['why']})"
            if admitted["reserved"]:
                extra += " (reserved)"
            if admitted["window"]:
                extra += " (has not asked to write: goes on beside if it reads on asleep)"
            if admitted.get("exclusive_first"):
                extra += " (waiting for EXCLUSIVE: new readers wait behind it)"
            since = f"{admitted['seconds']:.3f}s{extra}"
            lines.append(f"    running: pid {admitted['pid']} for {since}  {admitted['command']}")
        waiting = db["waiting"]
        if waiting and db.get("still_seconds") is not None:
            lines.append(
                f"    queue: {len(waiting)} waiting; the turn last moved {db['still_seconds']:.3f}s ago "
                f"(waiters time out after {report.get('lock_timeout')}s without a move)"
            )
        for w in waiting[:SHOWN_WAITERS]:
            lines.append(f"    waiting: pid {w['pid']} for {w['seconds']:.3f}s ({w['why']})  {w['command']}")
        if len(waiting) > SHOWN_WAITERS:
            lines.append(f"    ... and {len(waiting) - SHOWN_WAITERS} more waiting (--json lists them all)")
        beside = db.get("beside")
        if beside:
            lines.append(
                f"    reading beside: {beside['count']}, the oldest pid {beside['oldest_pid']} for "
                f"{beside['oldest_seconds']:.3f}s  {beside.get('oldest_command', '')}"
            )
            readers = [o for o in db["owners"] if o["state"] == "beside"]
            for o in sorted(readers, key=lambda o: -o["seconds"])[:SHOWN_WAITERS]:
                since = f"{o['seconds']:.3f}s ({o['why']})"
                lines.append(f"    beside: pid {o['pid']} for {since}  {o['command']}")
        if db.get("writers"):
            lines.append(f"    writers (take turns): pids {', '.join(map(str, db['writers']))}")
    return "\n".join(lines)
