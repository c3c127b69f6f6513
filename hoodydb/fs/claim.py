"""One backing tree, one mount: the claim a daemon holds on the directory tree it serves.

Two daemons serving the same files keep two lock tables, so each lets its own clients commit over
the other's: acknowledged commits are lost. Before it mounts, a daemon therefore takes `flock`
locks on the backing file system itself and keeps them until it has unmounted: LOCK_EX on its
backing directory and LOCK_SH on every directory above it. A second claim then conflicts when

- it is for the same directory: LOCK_EX meets LOCK_EX;
- it is for a directory inside a served one: its LOCK_SH on the served directory meets LOCK_EX;
- it is for a directory above a served one: its LOCK_EX meets the served one's LOCK_SH.

Trees side by side share only LOCK_SH and coexist. The kernel drops the locks with the daemon's
last descriptor, so a killed daemon leaves no stale claim. Being locks on the directories'
inodes, they hold across users, runtime directories, bind mounts of the same directory and
containers sharing a volume (one kernel); only the directories a daemon sees above its own are
locked, so a tree served in another container is found above or at a directory, never below.

Who holds a conflicting claim is read from /proc/locks (pid) and /proc/self/mountinfo (the
mounts whose source, `hoodydb:BACKING`, names the directory).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from hoodydb.fs.process import FSTYPE

log = logging.getLogger(__name__)

FSNAME_PREFIX = "hoodydb:"  # a mount's source in mountinfo: hoodydb:BACKING
_ADVICE = "one backing directory, one mount: use that mount (bind it into containers) or stop it first"


class ClaimError(Exception):
    """Another live daemon serves this tree, or a tree that overlaps it."""


def _ancestors(path: str) -> Iterator[str]:
    parent = os.path.dirname(path)
    while parent != path:
        yield parent
        path, parent = parent, os.path.dirname(parent)


class TreeClaim:
    """`with TreeClaim(backing):` holds the claim; ClaimError names the daemon that holds it."""

    def __init__(self, backing: str | os.PathLike[str]) -> None:
        self.backing = os.path.realpath(backing)
        self._fds: list[int] = []

    def acquire(self) -> TreeClaim:
        _refuse_if_on_a_mount(self.backing)
        wanted = [(self.backing, fcntl.LOCK_EX)] + [(p, fcntl.LOCK_SH) for p in _ancestors(self.backing)]
        try:
            conflict = next(((d, how) for d, how in wanted if not self._lock(d, how)), None)
        except BaseException:
            self.release()
            raise
        if conflict is not None:
            self.release()  # first, so that our own locks are not counted as holders
            raise ClaimError(refusal(self.backing, *conflict))
        return self

    def _lock(self, directory: str, how: int) -> bool:
        """Take one lock; False if another claim holds a conflicting one."""
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            if how == fcntl.LOCK_EX:
                raise ClaimError(f"cannot open the backing directory {directory}: {exc.strerror}") from None
            return True  # a directory above that we may not read: no claim can be checked there
        self._fds.append(fd)
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:  # a file system without flock on directories (NFS)
            if how == fcntl.LOCK_EX:
                log.warning(
                    "cannot claim %s (%s): a second mount of this directory would not be detected",
                    directory,
                    exc.strerror,
                )
        return True

    def release(self) -> None:
        while self._fds:
            os.close(self._fds.pop())  # closing the only descriptor drops its lock

    def __enter__(self) -> TreeClaim:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _refuse_if_on_a_mount(backing: str) -> None:
    """A tree reached through a hoodydb mount: its locks would be on the mount's inodes, blind to
    the claim on the files beneath, and a second daemon would keep a second lock table over them."""
    for served, mountpoint in hoodydb_mounts():
        if mountpoint == backing or Path(mountpoint) in Path(backing).parents:
            try:
                st = os.stat(served)
                holders = flock_holders(st.st_dev, st.st_ino, "WRITE")
            except OSError:
                holders = []
            raise ClaimError(f"{backing} is on {_describe(holders, [mountpoint])}; {_ADVICE}")


def probe(backing: str | os.PathLike[str]) -> None:
    """Raise ClaimError now if a mount of `backing` would be refused."""
    with TreeClaim(backing):
        pass


def refusal(backing: str, directory: str, how: int) -> str:
    """The message for a claim of `backing` that met a conflicting lock on `directory`."""
    try:
        st = os.stat(directory)
        served_itself = how == fcntl.LOCK_SH or not _shareable(directory)
    except OSError:
        return f"{backing} is already served by another hoodydb mount; {_ADVICE}"
    if served_itself:
        what = backing if how == fcntl.LOCK_EX else f"{backing} is inside {directory}, which"
        holders = flock_holders(st.st_dev, st.st_ino, "WRITE")
        mounts = [(b, m) for b, m in hoodydb_mounts() if _same_dir(b, st)]
    else:  # a directory inside `backing` is served: its daemon holds LOCK_SH here
        holders = flock_holders(st.st_dev, st.st_ino, "READ")
        mounts = [(b, m) for b, m in hoodydb_mounts() if Path(directory) in Path(b).parents]
        inner = ", ".join(sorted({b for b, _ in mounts})) or "a directory"
        what = f"{backing} contains {inner}, which"
    return f"{what} is already served by {_describe(holders, [m for _, m in mounts])}; {_ADVICE}"


def _shareable(directory: str) -> bool:
    """Can LOCK_SH be had? No: a daemon serves `directory` itself. Asked of the kernel, because
    /proc/locks leaves out the locks of processes outside our PID namespace."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _same_dir(path: str, st: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def _describe(pids: list[int], mountpoints: list[str]) -> str:
    # /proc/locks leaves out processes of PID namespaces we cannot see (another container)
    pid = f"pid {', '.join(map(str, pids))}" if pids else "pid not visible here"
    if not mountpoints:
        return f"a hoodydb mount ({pid}) whose mountpoint is not visible here (another container?)"
    return f"the hoodydb mount at {', '.join(mountpoints)} ({pid})"


def flock_holders(dev: int, ino: int, kind: str) -> list[int]:
    """Pids holding a flock of `kind` (READ or WRITE) on the inode, from /proc/locks."""
    key = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    pids = []
    with open("/proc/locks", encoding="ascii") as f:
        for line in f:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 4711 fe:00:2147082 0 EOF"; blocked waiters carry "->"
            if len(fields) >= 6 and fields[1:4] == ["FLOCK", "ADVISORY", kind] and fields[5] == key:
                pids.append(int(fields[4]))
    return sorted(set(pids))


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def hoodydb_mounts() -> list[tuple[str, str]]:
    """(backing, mountpoint) of every hoodydb mount in this mount namespace, stale ones included."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            fstype, source = fields[fields.index("-") + 1 : fields.index("-") + 3]
            if fstype == FSTYPE and source.startswith(FSNAME_PREFIX):
                found.append((_unescape(source[len(FSNAME_PREFIX) :]), _unescape(fields[4])))
    return found
