"""mfusepy, completed for a file-handle based filesystem on libfuse3.

mfusepy 3.1.1 drops the file handle for truncate, chmod, chown and utimens, and hides the kernel's
lock_owner. With `nullpath_ok` libfuse passes no path for an open file, so those calls would have
nothing to act on (SQLite's ftruncate of -shm then fails with "disk I/O error"). This subclass
passes the handle through and hands the lock owner to `Operations.lock`, and keeps libfuse's own
shadow table of locks empty (see `FUSE.lock`). Its getattr copies the
`os.stat_result` that `Operations.getattr` returns straight into libfuse's struct stat: mfusepy's
goes through a dict and costs twice as much, on one of the commonest requests. Reads and writes
go between the file and libfuse's buffer without a bytes object in between: mfusepy's copies
(8 KiB and more, from libfuse's threads) fragmented the C heap until the daemon grew by about
1.7 MB per thousand contended transactions. Open and create tell the kernel, file by file, what
to do with its cached pages (`Passthrough.cache_mode`, cache.py). mfusepy also drops rename's
flags (renameat2's RENAME_EXCHANGE and RENAME_NOREPLACE would arrive as a plain rename, which
replaces the target): they are passed on to `Passthrough.rename`, which applies them with
`rename2`. It is the only module that touches ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from typing import Any

import mfusepy

from hoodydb.fs import signals

_libfuse: Any = mfusepy._libfuse
_libfuse.fuse_interrupted.restype = ctypes.c_int
_libfuse.fuse_get_session.restype = ctypes.c_void_p
_libfuse.fuse_get_session.argtypes = [ctypes.c_void_p]
_libfuse.fuse_session_exited.restype = ctypes.c_int
_libfuse.fuse_session_exited.argtypes = [ctypes.c_void_p]

F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
_AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.restype = ctypes.c_int
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]


def rename2(old_path: str, new_path: str, flags: int) -> None:
    """renameat2(2) with its flags, which Python's os module does not offer; OSError on failure."""
    if _libc.renameat2(_AT_FDCWD, os.fsencode(old_path), _AT_FDCWD, os.fsencode(new_path), flags):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), old_path, None, new_path)


def request_context() -> tuple[int, int, int]:
    """(uid, gid, pid) of the process behind the current request."""
    return mfusepy.fuse_get_context()


def request_pid() -> int:
    return _libfuse.fuse_get_context().contents.pid  # type: ignore[no-any-return]


_thread_state = threading.local()


def _pin_thread_state() -> None:
    """Keep this libfuse worker's Python thread state alive between callbacks.

    A ctypes callback on a thread Python did not start creates a thread state on entry and
    destroys it on exit; one extra PyGILState_Ensure that is never released keeps it, which
    saves that set-up on every later request this thread serves.
    """
    ctypes.pythonapi.PyGILState_Ensure()
    _thread_state.pinned = True


def _abort(wait: bool) -> int | None:
    """Polled by a waiting lock request: EAGAIN once the daemon is shutting down; once the
    client was interrupted, what its pending signals ask (signals.py); None to go on waiting."""
    fuse = _libfuse.fuse_get_context().contents.fuse
    if fuse and _libfuse.fuse_session_exited(_libfuse.fuse_get_session(fuse)):
        return errno.EAGAIN
    if not _libfuse.fuse_interrupted():
        return None
    return signals.answer(request_pid(), wait)


class Interruption:
    """The abort check of one lock request (F_SETLKW if `wait`, else F_SETLK or F_GETLK), polled
    by the lock manager while the request waits. It keeps the errno it decided on, which is the
    answer to an aborted wait (answers.py)."""

    __slots__ = ("errno", "wait")

    def __init__(self, wait: bool) -> None:
        self.wait = wait
        self.errno: int | None = None

    def __call__(self) -> bool:
        self.errno = _abort(self.wait)
        return self.errno is not None


def _fh(fip: Any) -> int | None:
    return fip.contents.fh if fip else None


_STAT_SIZE = ctypes.sizeof(mfusepy.c_stat)
_NS = 10**9


def _fill_stat(out: Any, st: os.stat_result) -> None:
    out.st_mode = st.st_mode
    out.st_ino = st.st_ino
    out.st_dev = st.st_dev
    out.st_nlink = st.st_nlink
    out.st_uid = st.st_uid
    out.st_gid = st.st_gid
    out.st_size = st.st_size
    out.st_blocks = st.st_blocks
    out.st_blksize = st.st_blksize
    out.st_atimespec.tv_sec, out.st_atimespec.tv_nsec = divmod(st.st_atime_ns, _NS)
    out.st_mtimespec.tv_sec, out.st_mtimespec.tv_nsec = divmod(st.st_mtime_ns, _NS)
    out.st_ctimespec.tv_sec, out.st_ctimespec.tv_nsec = divmod(st.st_ctime_ns, _NS)


class FUSE(mfusepy.FUSE):
    """mfusepy.FUSE with file handles for the metadata calls and the lock owner for locks."""

    def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> int:
        if not getattr(_thread_state, "pinned", False):
            _pin_thread_state()
        return super()._wrapper(func, *args, **kwargs)  # type: ignore[no-any-return]

    def _path(self, path: bytes | None) -> str | None:
        return None if path is None else path.decode(self.encoding, self.errors)

    def open(self, path: bytes, fip: Any) -> int:
        fi = fip.contents
        fi.fh = self.operations.open(self._path(path), fi.flags)
        self._set_cache_mode(fi)
        return 0

    def create(self, path: bytes, mode: int, fip: Any) -> int:
        fi = fip.contents
        fi.fh = self.operations.create(self._path(path), mode, fi.flags)
        self._set_cache_mode(fi)
        return 0

    def _set_cache_mode(self, fi: Any) -> None:
        mode = self.operations.cache_mode(fi.fh)
        fi.keep_cache = mode.keep
        fi.direct_io = mode.direct

    def read(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:
        view = memoryview((ctypes.c_char * size).from_address(ctypes.addressof(buf.contents)))
        return self.operations.read(None, view, offset, fip.contents.fh)  # type: ignore[no-any-return]

    def write(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:
        view = memoryview((ctypes.c_char * size).from_address(ctypes.addressof(buf.contents)))
        return self.operations.write(None, view, offset, fip.contents.fh)  # type: ignore[no-any-return]

    def fgetattr(self, path: bytes | None, buf: Any, fip: Any) -> int:
        st = self.operations.getattr(self._path(path), _fh(fip))
        ctypes.memset(buf, 0, _STAT_SIZE)
        _fill_stat(buf.contents, st)
        return 0

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        # mfusepy's drops `flags`: an exchange would replace the target instead.
        return self.operations.rename(self._path(old), self._path(new), flags)  # type: ignore[no-any-return]

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        return self.operations.truncate(self._path(path), length, _fh(fip))  # type: ignore[no-any-return]

    def chmod_fuse_3(self, path: bytes | None, mode: int, fip: Any) -> int:
        return self.operations.chmod(self._path(path), mode, _fh(fip))  # type: ignore[no-any-return]

    def chown_fuse_3(self, path: bytes | None, uid: int, gid: int, fip: Any) -> int:
        # (uid_t)-1 arrives as 2**32-1: "leave unchanged".
        uid = -1 if uid == 0xFFFFFFFF else uid
        gid = -1 if gid == 0xFFFFFFFF else gid
        return self.operations.chown(self._path(path), uid, gid, _fh(fip))  # type: ignore[no-any-return]

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        """Times in ns; None leaves one unchanged (UTIME_OMIT), -1 means now (UTIME_NOW)."""
        times = None
        if buf:
            times = tuple(
                None
                if ts.tv_nsec == UTIME_OMIT
                else -1
                if ts.tv_nsec == UTIME_NOW
                else ts.tv_sec * 10**9 + ts.tv_nsec
                for ts in (buf.contents.actime, buf.contents.modtime)
            )
        return self.operations.utimens(self._path(path), times, _fh(fip))  # type: ignore[no-any-return]

    def lock(self, path: bytes | None, fip: Any, cmd: int, lock: Any) -> int:
        fi = fip.contents
        fl = lock.contents
        err: int = self.operations.lock(fi.fh, fi.lock_owner, cmd, fl)
        if cmd != F_GETLK:
            # libfuse's high-level layer keeps its own copy of every lock granted here (built
            # from this struct after we return) and answers F_GETLK from it first when it shows
            # a conflict. That copy lags behind ours: a dead writer's RESERVED lingered in it
            # just long enough for a reader's hot-journal check to believe the writer alive and
            # read a half-written database. Handing it F_UNLCK keeps it empty, so every F_GETLK
            # is ours to answer.
            fl.l_type = F_UNLCK
        return err
