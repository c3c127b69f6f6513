"""Mount a backing directory with the lock manager in charge: checks first, then the FUSE loop."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hoodydb.control_client import socket_path
from hoodydb.fs.affinity import ContentionPin
from hoodydb.fs.binding import FUSE
from hoodydb.fs.claim import FSNAME_PREFIX, ClaimError, TreeClaim, probe
from hoodydb.fs.control import ControlServer
from hoodydb.fs.operations import Passthrough
from hoodydb.fs.orphan import SERVE_PID_ENV
from hoodydb.fs.process import is_mounted
from hoodydb.locks.layout import DEFAULT_PENDING_BYTE, LockLayout
from hoodydb.locks.manager import LockManager
from hoodydb.locks.types import Policy

log = logging.getLogger("hoodydb.mount")


class MountConfigError(Exception):
    """The mount cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class MountOptions:
    backing: Path
    mountpoint: Path
    policy: Policy = Policy.SERIAL
    lock_timeout: float = 30.0
    max_threads: int = 256
    kernel_cache: bool = True
    attr_timeout: float = 1.0
    pin_under_contention: bool = True
    pending_byte: int = DEFAULT_PENDING_BYTE
    control_socket: Path | None = None
    debug: bool = False


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
    except ClaimError as exc:
        raise MountConfigError(str(exc)) from None


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def run(opts: MountOptions) -> None:
    """Mount and serve until unmounted or signalled (SIGINT/SIGTERM unmount cleanly)."""
    preflight(opts)
    manager = LockManager(
        policy=opts.policy,
        layout=LockLayout(opts.pending_byte),
        lock_timeout=opts.lock_timeout,
        max_waiters=max(1, opts.max_threads - 16),
    )
    ops = Passthrough(
        str(opts.backing), manager, attr_timeout=opts.attr_timeout, kernel_cache=opts.kernel_cache
    )

    pin = ContentionPin(lambda: manager.waits, lambda: manager.waiting) if opts.pin_under_contention else None

    # Resolved now: libfuse moves the daemon to / once mounted, and a relative path would then
    # name the wrong directory.
    mountpoint, backing = str(opts.mountpoint.resolve()), str(opts.backing.resolve())

    def report() -> dict[str, Any]:
        databases = manager.snapshot()
        for db in databases:
            for entry in [db["admitted"], *db["waiting"]]:
                if entry is not None:
                    entry["command"] = _cmdline(entry["pid"])
        return {
            "mountpoint": mountpoint,
            "backing": backing,
            "pid": os.getpid(),
            "policy": opts.policy.value,
            "serve_pid": int(os.environ.get(SERVE_PID_ENV) or 0) or None,  # see orphan.py
            "lock_timeout": opts.lock_timeout,
            "pinned_to_cpu": pin.cpu if pin is not None and pin.pinned else None,
            "databases": databases,
        }

    # Held until unmounted: a second daemon on this tree would keep a second lock table.
    try:
        claim = TreeClaim(opts.backing).acquire()
    except ClaimError as exc:
        raise MountConfigError(str(exc)) from None
    control = ControlServer(opts.control_socket or socket_path(opts.mountpoint), report)
    control.start()
    if pin is not None:
        pin.start()
    try:
        _serve(ops, opts)
    finally:
        if pin is not None:
            pin.close()
        manager.shutdown()
        control.close()
        claim.release()


def _serve(ops: Passthrough, opts: MountOptions) -> None:
    try:
        FUSE(
            ops,
            str(opts.mountpoint),
            foreground=True,
            debug=opts.debug,
            allow_other=os.geteuid() == 0,
            default_permissions=True,
            fsname=f"{FSNAME_PREFIX}{opts.backing.resolve()}",
            subtype="hoodydb",  # the type reads fuse.hoodydb (process.FSTYPE)
            # A waiting lock request occupies a worker thread; enough of them that waiters can
            # never starve the admitted client of threads for its reads and writes.
            max_threads=opts.max_threads,
            # Workers never exit: each keeps a pinned Python thread state (binding.py), which
            # an exiting thread would leak.
            max_idle_threads=opts.max_threads,
            clone_fd=True,  # a /dev/fuse descriptor per worker: no shared read queue to wake
        )
    except RuntimeError as exc:
        # libfuse's main returns 8 when its loop ended on SIGTERM, SIGINT or SIGHUP: our
        # normal way to stop, after which it has unmounted.
        if exc.args != (8,):
            raise
