"""`hoodydb mount` and `hoodydb locks`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

from hoodydb import control_client
from hoodydb.fs.process import MountError, MountProcess, this_program
from hoodydb.locks.layout import DEFAULT_PENDING_BYTE
from hoodydb.locks.types import Policy


@click.command()
@click.argument("backing", type=click.Path(file_okay=False, path_type=Path))
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--policy",
    type=click.Choice([p.value for p in Policy]),
    default=Policy.SERIAL.value,
    show_default=True,
    help="serial: one transaction per database at a time, FIFO. off: plain POSIX locks, as on a local disk.",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Longest a transaction waits for its turn before the client sees 'database is locked'.",
)
@click.option("--foreground", is_flag=True, help="Stay attached (default: detach once mounted).")
@click.option("--max-threads", type=click.IntRange(min=32), default=256, show_default=True)
@click.option(
    "--kernel-cache/--no-kernel-cache",
    default=True,
    show_default=True,
    help="Keep file pages cached in the kernel across opens, unless the file changed while "
    "nobody had it open. Turn off only if programs that do not go through the mount change "
    "files that clients have open.",
)
@click.option(
    "--pin-under-contention/--no-pin-under-contention",
    default=True,
    show_default=True,
    help="While clients queue for a turn, run the daemon on one CPU: its threads then pass "
    "Python's GIL without cross-CPU wake-ups.",
)
@click.option("--pending-byte", type=int, default=DEFAULT_PENDING_BYTE, show_default=True, hidden=True)
@click.option("--debug", is_flag=True, help="libfuse's request trace on stderr.")
def mount(
    backing: Path,
    mountpoint: Path,
    policy: str,
    lock_timeout: float,
    foreground: bool,
    max_threads: int,
    kernel_cache: bool,
    pin_under_contention: bool,
    pending_byte: int,
    debug: bool,
) -> None:
    """Mount BACKING at MOUNTPOINT: SQLite files opened under MOUNTPOINT are safe to write from many
    processes at once. SIGINT or SIGTERM unmounts."""
    from hoodydb.fs.mount import MountConfigError, MountOptions, preflight, run

    opts = MountOptions(
        backing=backing,
        mountpoint=mountpoint,
        policy=Policy(policy),
        lock_timeout=lock_timeout,
        max_threads=max_threads,
        kernel_cache=kernel_cache,
        pin_under_contention=pin_under_contention,
        pending_byte=pending_byte,
        debug=debug,
    )
    try:
        if not foreground:
            preflight(opts)
            args = [f"--policy={policy}", f"--lock-timeout={lock_timeout}", f"--max-threads={max_threads}"]
            args += [] if kernel_cache else ["--no-kernel-cache"]
            args += [] if pin_under_contention else ["--no-pin-under-contention"]
            args += [f"--pending-byte={pending_byte}"] + (["--debug"] if debug else [])
            log = control_client.socket_path(mountpoint).with_suffix(".log")
            log.parent.mkdir(parents=True, exist_ok=True)
            child = MountProcess(
                backing, mountpoint, extra_args=args, detach=True, stderr_path=log, program=this_program()
            ).start()
            click.echo(f"mounted {backing} at {mountpoint} (pid {child.pid}, log {log})")
            return
        level = os.environ.get("HOODYDB_LOG_LEVEL", "DEBUG" if debug else "WARNING").upper()
        logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("fuse").setLevel(logging.DEBUG if debug else logging.WARNING)
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


def _format(report: dict) -> str:  # type: ignore[type-arg]
    pinned = report.get("pinned_to_cpu")
    where = "" if pinned is None else f", on CPU {pinned} while clients queue"
    lines = [f"{report['mountpoint']}  (daemon pid {report['pid']}, policy {report['policy']}{where})"]
    for db in report["databases"]:
        c = db["counters"]
        lines.append(
            f"  {db['database']}  [{db['mode']}]  transactions={c['transactions']} waits={c['waits']} "
            f"timeouts={c['timeouts']} interrupts={c['interrupts']}"
        )
        admitted = db["admitted"]
        if admitted:
            extra = " (reserved)" if admitted["reserved"] else ""
            if admitted.get("exclusive_first"):
                extra += " (waiting for EXCLUSIVE: new readers wait behind it)"
            since = f"{admitted['seconds']:.3f}s{extra}"
            lines.append(f"    running: pid {admitted['pid']} for {since}  {admitted['command']}")
        for w in db["waiting"]:
            lines.append(f"    waiting: pid {w['pid']} for {w['seconds']:.3f}s  {w['command']}")
        if db["readers"]:
            lines.append(f"    reading beside it: pids {', '.join(map(str, db['readers']))}")
    return "\n".join(lines)
