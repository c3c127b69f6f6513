"""The passthrough filesystem: every call maps to the same call on the backing directory.

Every operation on an open file goes through its file descriptor, never its path, so files that
SQLite unlinks while they are open (-journal, -wal) keep working, and with `nullpath_ok` libfuse
does not have to build paths at all. Locks are translated here and decided by the lock manager.

A file unlinked while open keeps a name in libfuse, which then renames it to a hidden one
instead of unlinking it, so that calls without a file handle (fstat: the kernel sends none)
still find it. Here that rename unlinks the backing file at once and keeps a descriptor of it
under the hidden name (`unlinked`), so nothing hidden ever appears in the backing directory or
in a listing, and the name goes when libfuse unlinks it after the last close. libfuse hides an
open file that a rename replaces in the same way, before that rename: then the backing file is
left to the rename, which replaces it, or leaves it in place if it fails.

An OSError raised here reaches the client as its errno: mfusepy's wrapper does that translation.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import mfusepy

from hoodydb.fs import answers, binding
from hoodydb.fs.cache import CacheFreshness, CacheMode
from hoodydb.fs.commits import WRITER_XATTR, CommitWatch
from hoodydb.locks import EOF_OFFSET, FileKey, FileRole, LockKind, LockManager, LockRequest

log = logging.getLogger(__name__)

_KINDS = {binding.F_RDLCK: LockKind.READ, binding.F_WRLCK: LockKind.WRITE, binding.F_UNLCK: LockKind.UNLOCK}
_FLOCK_TYPES = {LockKind.READ: binding.F_RDLCK, LockKind.WRITE: binding.F_WRLCK}
FUSE_CAP_AUTO_INVAL_DATA = 1 << 12
# libfuse's name for a file unlinked while open: ".fuse_hidden" + node id + counter, in hex.
HIDDEN_NAME = re.compile(r"\.fuse_hidden[0-9a-f]{16}")
# libfuse counts a file open until our release has returned: how long after its last close a
# rename to a hidden name is still libfuse's hiding (the kernel sends RELEASE asynchronously).
CLOSING_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Handle:
    """An open file: its descriptor on the backing file and what the lock manager needs to know."""

    fd: int
    file: FileKey
    role: FileRole
    db: FileKey | None
    readonly: bool
    cache: CacheMode  # what the kernel may do with its cached pages of the file, from this open
    path: str  # the name it was opened by


class Kept(NamedTuple):
    """Our descriptor of a file unlinked while open, kept under libfuse's hidden name for it."""

    fd: int
    file: FileKey


def classify(path: str) -> FileRole:
    """SQLite's file names say what a file is; only the database and -shm carry its locks."""
    if path.endswith("-shm"):
        return FileRole.SHM
    if path.endswith(("-journal", "-wal")):
        return FileRole.OTHER
    return FileRole.DATABASE


def byte_range(l_start: int, l_len: int) -> tuple[int, int]:
    """A struct flock range (SEEK_SET) as [start, end); l_len 0 runs to EOF, negative runs back."""
    if l_len == 0:
        return l_start, EOF_OFFSET
    if l_len < 0:
        return l_start + l_len, l_start
    return l_start, l_start + l_len


def _key(st: os.stat_result) -> FileKey:
    return (st.st_dev, st.st_ino)


class Passthrough(mfusepy.Operations):  # type: ignore[misc]
    use_ns = True  # times as integer nanoseconds

    def __init__(
        self,
        backing: str,
        manager: LockManager,
        *,
        attr_timeout: float = 1.0,
        kernel_cache: bool = True,
        commits: CommitWatch | None = None,
    ) -> None:
        self.root = os.path.realpath(backing)
        self.manager = manager
        self.commits = commits  # the commit feed's eyes on database and WAL writes (None: off)
        self.attr_timeout = attr_timeout
        self.kernel_cache = kernel_cache
        self.handles: dict[int, Handle] = {}
        self.open_count: dict[FileKey, int] = {}
        self.freshness = CacheFreshness(enabled=kernel_cache)
        # libfuse's hidden name of each file unlinked while open -> a descriptor of it, ours
        self.unlinked: dict[str, Kept] = {}
        self._last_closed: dict[FileKey, float] = {}  # files closed for good recently, oldest first
        self._handles_mu = threading.Lock()  # guards handles, open_count, freshness and unlinked
        self._as_root = os.geteuid() == 0

    def _real(self, path: str) -> str:
        return self.root + path if path != "/" else self.root

    def _give_to_caller(self, real: str) -> None:
        """Files created for a non-root client belong to that client, as on a local disk."""
        if self._as_root:
            uid, gid, _ = binding.request_context()
            if uid or gid:
                os.lchown(real, uid, gid)

    # -- lifecycle ---------------------------------------------------------------------------------

    def init_with_config(self, conn: Any, config: Any) -> None:
        config.nullpath_ok = 1  # descriptor-based: open files need no path
        # Unlinking an open file renames it to a hidden name in libfuse (see `rename`): fstat of
        # it comes with no file handle, and without a name libfuse answers ESTALE.
        config.hard_remove = 0
        config.use_ino = 1
        config.attr_timeout = self.attr_timeout
        config.entry_timeout = self.attr_timeout
        # Safe because every create goes through this mount, which invalidates the entry.
        config.negative_timeout = self.attr_timeout
        # Each open decides what the kernel does with the file's cached pages (cache.py).
        config.kernel_cache = 0
        if self.kernel_cache:
            conn.want &= ~FUSE_CAP_AUTO_INVAL_DATA

    def destroy(self, path: str) -> None:
        self.manager.shutdown()

    # -- metadata ----------------------------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> os.stat_result:
        """The backing file's stat, as it is: binding.py copies it into libfuse's struct."""
        if fh is not None:
            return os.fstat(fh)
        if path in self.unlinked:
            with self._descriptor(path, None) as fd:
                if fd is not None:
                    return os.fstat(fd)
        return os.lstat(self._real(path or "/"))

    @contextlib.contextmanager
    def _descriptor(self, path: str | None, fh: int | None) -> Iterator[int | None]:
        """The descriptor a call on `path` or open file `fh` acts on: `fh`, or the one kept for a
        file unlinked while open, held for the call (`unlink` closes it under the same lock)."""
        if fh is not None or path not in self.unlinked:
            yield fh
            return
        with self._handles_mu:
            kept = self.unlinked.get(path or "")
            yield kept.fd if kept is not None else None

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.root)
        return {
            key: getattr(sv, key)
            for key in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_frsize",
            )
        } | {"f_namemax": sv.f_namemax}

    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> int:
        with self._descriptor(path, fh) as fd:
            os.chmod(fd if fd is not None else self._real(path or "/"), mode)
        return 0

    def chown(self, path: str | None, uid: int, gid: int, fh: int | None = None) -> int:
        with self._descriptor(path, fh) as fd:
            if fd is not None:
                os.fchown(fd, uid, gid)
            else:
                os.lchown(self._real(path or "/"), uid, gid)
        return 0

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self._descriptor(path, fh) as fd:
            os.truncate(fd if fd is not None else self._real(path or "/"), length)
        return 0

    def utimens(
        self, path: str | None, times: tuple[int | None, int | None] | None, fh: int | None = None
    ) -> int:
        """Times in ns; None keeps one as it is (UTIME_OMIT), -1 means now (UTIME_NOW)."""
        # Through the descriptor when there is one (the file may be unlinked); never follow a
        # symlink by path.
        with self._descriptor(path, fh) as fd:
            target: int | str = fd if fd is not None else self._real(path or "/")
            follow = fd is not None
            if times is None:
                os.utime(target, follow_symlinks=follow)
                return 0
            st = os.stat(target, follow_symlinks=follow)
            now = time.time_ns()
            atime, mtime = (
                now if t == -1 else current if t is None else t
                for t, current in zip(times, (st.st_atime_ns, st.st_mtime_ns), strict=True)
            )
            os.utime(target, ns=(atime, mtime), follow_symlinks=follow)
        return 0

    # -- names -------------------------------------------------------------------------------------

    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    def mknod(self, path: str, mode: int, dev: int) -> int:
        os.mknod(self._real(path), mode, dev)
        self._give_to_caller(self._real(path))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        self._give_to_caller(self._real(path))
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._real(target))
        self._give_to_caller(self._real(target))
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self._real(source), self._real(target))
        return 0

    def unlink(self, path: str) -> int:
        # libfuse lets go of a hidden name once that name's handles are closed (`release` lets
        # go of it too, once the file has no handle left under any name).
        if path in self.unlinked:
            with self._handles_mu:
                kept = self.unlinked.pop(path, None)
            if kept is not None:
                os.close(kept.fd)
                return 0
        os.unlink(self._real(path))
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def rename(self, old: str, new: str, flags: int = 0) -> int:
        """`flags`: renameat2's. An exchange needs no bookkeeping: locks, cache notes and open
        handles are keyed by inode, which stays with its data (only names move), and a hidden
        name in `unlinked` is never exchanged. A failure is told to binding.py: libfuse may have
        hidden the target already (`binding.rename_failed`)."""
        try:
            self._rename(old, new, flags)
        except OSError:
            binding.rename_failed()
            raise
        return 0

    def _rename(self, old: str, new: str, flags: int) -> None:
        if flags:
            self._rename_with_flags(old, new, flags)
            return
        # libfuse hides a file with a plain rename only (never with flags), under a name other
        # than the one the client's rename gives (`rename_target`, None while it hides a file
        # being unlinked).
        head, name = os.path.split(new)
        target = binding.rename_target()
        if (
            name != target
            and HIDDEN_NAME.fullmatch(name)
            and os.path.dirname(old) == head
            and self._hide(old, new, unlink=target is None)
        ):
            return
        os.rename(self._real(old), self._real(new))
        self._move_hidden({old: new})

    def _rename_with_flags(self, old: str, new: str, flags: int) -> None:
        if flags & ~(binding.RENAME_NOREPLACE | binding.RENAME_EXCHANGE):
            # RENAME_WHITEOUT (overlayfs's) or unknown: EINVAL is renameat2's "not supported
            # here". Never ENOSYS: the kernel would then refuse every later renameat2 flag.
            raise mfusepy.FuseOSError(errno.EINVAL)
        # A hidden name has no backing file behind it and an unlinked file cannot get a name
        # again: it is neither replaced nor exchanged.
        if new in self.unlinked and flags & binding.RENAME_NOREPLACE:
            raise mfusepy.FuseOSError(errno.EEXIST)
        if old in self.unlinked or new in self.unlinked:
            raise mfusepy.FuseOSError(errno.ENOENT)
        binding.rename2(self._real(old), self._real(new), flags)
        self._move_hidden({old: new, new: old} if flags & binding.RENAME_EXCHANGE else {old: new})

    def _move_hidden(self, moves: dict[str, str]) -> None:
        """libfuse names a hidden file by its directory's path: when a directory moves, the
        names of the hidden files under it move too (else fchmod or fstat of such a file, which
        come with that path and no file handle, would find nothing)."""
        with self._handles_mu:
            if not self.unlinked:
                return
            moved = {}
            for name in list(self.unlinked):
                for old, new in moves.items():
                    if name.startswith(old + "/"):
                        moved[new + name[len(old) :]] = self.unlinked.pop(name)
                        break
            self.unlinked.update(moved)

    def _hide(self, path: str, hidden: str, *, unlink: bool) -> bool:
        """libfuse hides `path`, open and being unlinked (`unlink`) or about to be replaced by a
        rename: keep a descriptor of it as `hidden`, and unlink it here if asked. A replaced
        file is left to the rename that follows, which replaces it in the backing directory,
        or leaves it there when it fails (EXDEV, ENOENT...): unlinked now, the file would be
        lost. False if the file is not open and was not just closed: a client's own rename to
        such a name.

        A file whose last RELEASE is under way is hidden with no descriptor: libfuse 3.14 may
        then never unlink the hidden name, which must not be left in the backing directory."""
        real = self._real(path)
        key = _key(os.lstat(real))
        with self._handles_mu:
            fd = next((h.fd for h in self.handles.values() if h.file == key), None)
            closed_at = self._last_closed.get(key)
            if fd is None and (closed_at is None or time.monotonic() - closed_at > CLOSING_SECONDS):
                return False
            copy = os.dup(fd) if fd is not None else None
            if unlink:
                try:
                    os.unlink(real)
                except OSError:
                    if copy is not None:
                        os.close(copy)
                    raise
            if copy is not None:
                self.unlinked[hidden] = Kept(copy, key)
        return True

    def _let_go_of_hidden(self, key: FileKey) -> None:
        """Close what is kept of `key` once nobody has it open (under the handle lock). libfuse
        unlinks its hidden name after the last close, but only if it can still name it: not
        once its directory was removed."""
        if self.unlinked:
            for name in [name for name, kept in self.unlinked.items() if kept.file == key]:
                os.close(self.unlinked.pop(name).fd)

    def _note_last_close(self, key: FileKey) -> None:
        now = time.monotonic()
        closed = self._last_closed
        closed.pop(key, None)
        closed[key] = now
        while now - next(iter(closed.values())) > CLOSING_SECONDS:
            del closed[next(iter(closed))]

    # -- directories -------------------------------------------------------------------------------

    def opendir(self, path: str) -> int:
        return os.open(self._real(path), os.O_RDONLY | os.O_DIRECTORY)

    def readdir(self, path: str | None, fh: int) -> Iterator[tuple[str, dict[str, int], int]]:
        # Entries need their inode: with use_ino, a zero d_ino reads as "deleted" to readdir(3).
        here = os.fstat(fh)
        yield ".", {"st_ino": here.st_ino, "st_mode": here.st_mode}, 0
        yield "..", {"st_ino": here.st_ino, "st_mode": here.st_mode}, 0
        with os.scandir(fh) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                yield entry.name, {"st_ino": st.st_ino, "st_mode": st.st_mode}, 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        # SQLite syncs the directory after creating a journal or WAL, so that the file survives
        # a power loss. Unimplemented, the kernel would quietly skip every later one.
        os.fsync(fh)
        return 0

    def releasedir(self, path: str | None, fh: int) -> int:
        os.close(fh)
        return 0

    # -- open files --------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        return self._open(path, flags)

    def create(self, path: str, mode: int, flags: int) -> int:
        fd = self._open(path, flags | os.O_CREAT, mode)
        if self._as_root:
            uid, gid, _ = binding.request_context()
            if uid or gid:
                try:
                    os.fchown(fd, uid, gid)
                except OSError:
                    self.release(path, fd)  # the kernel never saw this handle: no RELEASE comes
                    raise
        return fd

    def _open(self, path: str, flags: int, mode: int = 0o666) -> int:
        real = self._real(path)
        readonly = (flags & os.O_ACCMODE) == os.O_RDONLY
        with self._descriptor(path, None) as kept:
            source = real if kept is None else f"/proc/self/fd/{kept}"  # reopened by its hidden name
            fd = os.open(source, flags & ~os.O_DIRECT, mode)
        st = os.fstat(fd)
        key = _key(st)
        role = classify(path) if stat.S_ISREG(st.st_mode) else FileRole.OTHER
        db: FileKey | None = None
        if role is FileRole.DATABASE:
            db = key
            self.manager.name_database(key, path)
        elif role is FileRole.SHM:
            try:
                main = os.stat(real[: -len("-shm")])
                db = (main.st_dev, main.st_ino)
            except OSError:
                role = FileRole.OTHER
        with self._handles_mu:
            mapped = classify(path) is FileRole.SHM  # SQLite maps a -shm, whatever its database
            if mapped and st.st_nlink > 1 and self._open_by_another_name(key, path):
                # Each name has its own kernel inode, so its own mapped pages: two WAL indexes.
                os.close(fd)
                log.warning("refused %s: the same -shm is open under another name (hard link)", path)
                raise OSError(errno.EBUSY, "the -shm is open under another name")
            already_open = self.open_count.get(key, 0)
            cache = self.freshness.opened(key, st, already_open=already_open, mapped=mapped)
            self.handles[fd] = Handle(fd, key, role, db, readonly, cache, path)
            self.open_count[key] = already_open + 1
        if self.commits is not None:
            self.commits.opened(fd, path, role, binding.request_pid())
        return fd

    def _open_by_another_name(self, key: FileKey, path: str) -> bool:
        return any(h.file == key and h.path != path for h in self.handles.values())

    def cache_mode(self, fh: int) -> CacheMode:
        """What the kernel may do with its cached pages of the file just opened as `fh`."""
        handle = self.handles.get(fh)
        return handle.cache if handle is not None else CacheMode(keep=False)

    def read(self, path: str | None, buffer: memoryview, offset: int, fh: int) -> int:
        """Fill libfuse's own buffer (binding.py), instead of mfusepy's returning bytes."""
        return os.preadv(fh, [buffer], offset)

    def write(self, path: str | None, data: bytes | memoryview, offset: int, fh: int) -> int:
        written = os.pwrite(fh, data, offset)
        commits = self.commits
        if commits is not None and commits.watches(fh):
            commits.wrote(fh, data[:written], offset, binding.request_pid)
        return written

    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> int:
        """Only the commit feed's label (commits.py): extended attributes are not passed through."""
        label = bytes(value).decode(errors="replace")
        if (
            name == WRITER_XATTR
            and self.commits is not None
            and self.commits.label(binding.request_pid(), label)
        ):
            return 0
        raise OSError(errno.ENOTSUP, "extended attributes are not supported")

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    def fallocate(self, path: str | None, mode: int, offset: int, size: int, fh: int) -> int:
        if mode != 0:
            raise mfusepy.FuseOSError(errno.EOPNOTSUPP)
        os.posix_fallocate(fh, offset, size)
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        # Nothing buffered here; libfuse follows every FLUSH with an unlock of the owner's locks.
        # The client's close() waits for FLUSH, not for RELEASE: note how the file looks now.
        if self.kernel_cache:
            with contextlib.suppress(OSError):
                st = os.fstat(fh)
                with self._handles_mu:
                    self.freshness.flushed(fh, st)
        return 0

    def release(self, path: str | None, fh: int) -> int:
        with self._handles_mu:
            handle = self.handles.pop(fh, None)
            if handle is None:
                os.close(fh)
                return 0
            if handle.role is not FileRole.OTHER:
                self.manager.forget_handle(fh)
            if self.commits is not None:
                self.commits.released(fh)  # before the descriptor's number can be reused
            left = self.open_count[handle.file] - 1
            if left:
                self.open_count[handle.file] = left
            else:
                del self.open_count[handle.file]
            st: os.stat_result | None = None
            if not left and self.kernel_cache:
                with contextlib.suppress(OSError):
                    st = os.fstat(fh)
            with contextlib.suppress(OSError):  # the kernel ignores RELEASE's answer anyway
                os.close(fh)
            self.freshness.released(fh, handle.file, handle.cache, st, last=not left)
            if not left:
                self._note_last_close(handle.file)
                self._let_go_of_hidden(handle.file)
                # Nobody has the file open any more, so nobody can hold a lock on it: drop any
                # that a lost FLUSH left behind rather than let them block the next client.
                # (Under the handle lock, so that an open racing with this release is not
                # forgotten.)
                self.manager.release_file(handle.file)
        return 0

    # -- locks -------------------------------------------------------------------------------------

    def lock(self, fh: int, owner: int, cmd: int, fl: Any) -> int:
        handle = self.handles.get(fh)
        if handle is None:
            return -errno.EBADF
        kind = _KINDS.get(fl.l_type)
        if kind is None:
            return -errno.EINVAL
        start, end = byte_range(fl.l_start, fl.l_len)
        pid = binding.request_pid() if kind is not LockKind.UNLOCK else 0
        if kind is LockKind.UNLOCK and self.commits is not None and self.commits.pending:
            # A writer ends its write transaction with an unlock: its commit is announced now,
            # before the next writer can have its turn.
            self.commits.unlocked(fh, binding.request_pid())
        req = LockRequest(
            handle.file,
            handle.db,
            handle.role,
            owner,
            pid,
            start,
            end,
            kind,
            handle.readonly,
            cmd == binding.F_SETLKW,
            fh,
            self.manager.layout.names(handle.role, start, end),
        )
        abort = binding.Interruption(req.wait)
        if cmd == binding.F_GETLK:
            conflict = self.manager.getlk(req, abort)
            if conflict is None:
                fl.l_type = binding.F_UNLCK
            else:
                fl.l_type = _FLOCK_TYPES[conflict.kind]
                fl.l_whence = os.SEEK_SET
                fl.l_start = conflict.start
                fl.l_len = 0 if conflict.end == EOF_OFFSET else conflict.end - conflict.start
                fl.l_pid = conflict.pid
            return 0
        return -answers.errno_for(self.manager.setlk(req, abort), req.wait, abort.errno)
