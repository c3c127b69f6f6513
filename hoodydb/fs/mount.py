"""Mount a backing directory with the lock manager in charge: checks first, then the FUSE loop."""

from __future__ import annotations

import gc
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hoodydb.backup.binary import LitestreamMissing, locate
from hoodydb.backup.supervisor import Replication
from hoodydb.control_client import RuntimeDirError, ensure_runtime_dir, socket_path
from hoodydb.fs import activity, binding, capacity
from hoodydb.fs.affinity import ContentionPin
from hoodydb.fs.binding import FUSE
from hoodydb.fs.claim import FSNAME_PREFIX, ClaimError, TreeClaim, probe
from hoodydb.fs.commits import CommitWatch
from hoodydb.fs.control import ControlServer
from hoodydb.fs.feed import CommitFeed
from hoodydb.fs.operations import Passthrough
from hoodydb.fs.orphan import SERVE_PID_ENV
from hoodydb.fs.process import is_mounted
from hoodydb.fs.settings import MountSettings
from hoodydb.locks import LockLayout, LockManager, LockSettings
from hoodydb.sql.paths import STATE_DIR_NAME

log = logging.getLogger("hoodydb.mount")


class MountConfigError(Exception):
    """The mount cannot start; the message says why and what to do."""


# How long the kernel may trust a file's attributes before asking again.
ATTR_TIMEOUT_S = 1.0
# The collector's thresholds (gc.set_threshold; Python's defaults are 700, 10, 10): see
# _quiet_collector.
GC_YOUNG = 50_000
GC_OLDER = 20
GC_OLDEST = 100


@dataclass(frozen=True)
class MountOptions:
    backing: Path
    mountpoint: Path
    settings: MountSettings = field(default_factory=MountSettings)


def preflight(opts: MountOptions) -> None:
    """Refuse early, with a message a person can act on, instead of failing inside libfuse."""
    if not opts.backing.is_dir():
        raise MountConfigError(f"backing directory {opts.backing} does not exist (create it first)")
    if not os.path.exists("/dev/fuse"):
        raise MountConfigError(
            "/dev/fuse is missing: load the fuse kernel module, or give the container --device /dev/fuse"
        )
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise MountConfigError("/dev/fuse is not readable and writable by this user")
    if shutil.which("fusermount3") is None:
        raise MountConfigError("fusermount3 is not installed (Debian/Ubuntu: apt-get install fuse3)")
    mountpoint = opts.mountpoint
    if mountpoint.exists() and not mountpoint.is_dir():
        raise MountConfigError(f"mountpoint {mountpoint} is not a directory")
    mountpoint.mkdir(parents=True, exist_ok=True)
    if is_mounted(mountpoint):
        raise MountConfigError(
            f"mountpoint {mountpoint} is busy: a FUSE filesystem is already mounted there "
            f"(left by a crashed daemon? fusermount3 -u {mountpoint})"
        )
    backing, target = opts.backing.resolve(), mountpoint.resolve()
    if target == backing or backing in target.parents:
        raise MountConfigError("the mountpoint must not be inside the backing directory")
    try:
        probe(backing)
        ensure_runtime_dir()
        if opts.settings.replica:
            locate(opts.settings.litestream)
    except (ClaimError, RuntimeDirError, LitestreamMissing) as exc:
        raise MountConfigError(str(exc)) from None


def _serve_pid() -> int | None:
    """The `serve` that started this daemon, if one did (orphan.py; its API labels commits)."""
    return int(os.environ.get(SERVE_PID_ENV) or 0) or None


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


# Workers never parked: the admitted client's reads, writes and unlocks always find one.
THREAD_RESERVE = 16


def run(opts: MountOptions) -> None:
    """Mount and serve until unmounted or signalled (SIGINT/SIGTERM unmount cleanly)."""
    preflight(opts)
    settings = opts.settings
    capacity.raise_open_files_limit()  # a descriptor per worker thread (clone_fd)
    threads = settings.worker_threads()
    manager = LockManager(
        LockSettings(
            policy=settings.policy,
            layout=LockLayout(settings.pending_byte),
            lock_timeout=settings.lock_timeout,
            max_waiters=max(1, threads - THREAD_RESERVE),
            speculative_reads=settings.speculative_reads,
        ),
        working=activity.working,
        host_busy=activity.host_busy,
    )
    root = opts.backing.resolve()
    # The last sequence numbers live in the backing directory's state dir, beside the API's token.
    feed = CommitFeed(root / STATE_DIR_NAME, root=root) if settings.commit_feed else None
    ops = Passthrough(
        str(opts.backing),
        manager,
        attr_timeout=ATTR_TIMEOUT_S,
        kernel_cache=settings.kernel_cache,
        commits=CommitWatch(str(root), feed, serve_pid=_serve_pid()) if feed is not None else None,
    )

    pin = (
        ContentionPin(lambda: manager.waits, lambda: manager.waiting)
        if settings.pin_under_contention
        else None
    )

    # Resolved now: libfuse moves the daemon to / once mounted, and a relative path would then
    # name the wrong directory.
    mountpoint, backing = str(opts.mountpoint.resolve()), str(root)

    replication = (
        Replication(
            backing=root,
            mountpoint=mountpoint,
            replica=settings.replica,
            binary=locate(settings.litestream),
            stale_after=settings.replica_stale_after,
        )
        if settings.replica
        else None
    )

    def backup_report() -> dict[str, Any]:
        if replication is None:
            return {"replica": None, "litestream": None, "databases": []}
        return replication.report()

    def report() -> dict[str, Any]:
        databases = [db.as_dict() for db in manager.snapshot()]
        for db in databases:
            for entry in [db["admitted"], *db["waiting"], *db["owners"]]:
                if entry is not None:
                    entry["command"] = _cmdline(entry["pid"])
            if db["beside"] is not None:
                db["beside"]["oldest_command"] = _cmdline(db["beside"]["oldest_pid"])
        return {
            "mountpoint": mountpoint,
            "backing": backing,
            "pid": os.getpid(),
            "policy": settings.policy.value,
            "serve_pid": _serve_pid(),  # see orphan.py
            "lock_timeout": settings.lock_timeout,
            "threads": threads,  # libfuse workers at most (--max-threads, or the machine's share)
            "parked": manager.parked(),
            "settings": settings.report(),  # what the daemon runs with, every option
            "pinned_to_cpu": pin.cpu if pin is not None and pin.pinned else None,
            "databases": databases,
            "tables": manager.table_sizes(),  # what the lock manager keeps: bounded by what is open
            "backup": backup_report(),  # Litestream's progress, per database (hoodydb.backup)
        }

    # Held until unmounted: a second daemon on this tree would keep a second lock table.
    try:
        claim = TreeClaim(opts.backing).acquire()
    except ClaimError as exc:
        raise MountConfigError(str(exc)) from None
    control = ControlServer(socket_path(opts.mountpoint), report, feed)
    control.start()
    log.info("mounting %s at %s: %s", backing, mountpoint, settings.report())
    if pin is not None:
        pin.start()
    if replication is not None:
        replication.start()  # its thread starts Litestream once the mount is up
    binding.relay_interrupts(manager.shutdown)
    try:
        _serve(ops, opts, threads)
    finally:
        if replication is not None:
            replication.stop()
        if pin is not None:
            pin.close()
        manager.shutdown()
        if feed is not None:
            feed.close()
        control.close()
        claim.release()


def _quiet_collector() -> None:
    """Make the cyclic garbage collector rare, and blind to what was built at start.

    Under a burst thousands of requests are parked, each with live objects: Python's default
    thresholds then run a full collection every few seconds, over all of them, holding the GIL.
    The daemon, pinned to one CPU among thousands of runnable clients (affinity.py), is
    preempted while it collects, and every lock request waits: 4,000 WAL clients spent 13 to 31 s
    of a burst in collections, and queued starts timed out ("database is locked"). Young cycles
    (a failed lookup's exception and traceback) are still collected, every GC_YOUNG allocations;
    older ones every GC_OLDER young collections, and the whole heap far more rarely."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, GC_OLDER, GC_OLDEST)


def _serve(ops: Passthrough, opts: MountOptions, threads: int) -> None:
    _quiet_collector()
    try:
        FUSE(
            ops,
            str(opts.mountpoint),
            foreground=True,
            debug=opts.settings.debug,
            allow_other=os.geteuid() == 0,
            default_permissions=True,
            fsname=f"{FSNAME_PREFIX}{opts.backing.resolve()}",
            subtype="hoodydb",  # the type reads fuse.hoodydb (process.FSTYPE)
            # A waiting lock request occupies a worker thread; enough of them that waiters can
            # never starve the admitted client of threads for its reads and writes.
            max_threads=threads,
            # Workers never exit: each keeps a pinned Python thread state (binding.py), which
            # an exiting thread would leak.
            max_idle_threads=threads,
            clone_fd=True,  # a /dev/fuse descriptor per worker: no shared read queue to wake
        )
    except RuntimeError as exc:
        # libfuse's main returns 8 when its loop ended on SIGTERM, SIGINT or SIGHUP: our
        # normal way to stop, after which it has unmounted.
        if exc.args != (8,):
            raise
