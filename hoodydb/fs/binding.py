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
`rename2`. libfuse hides an open file that a rename replaces through the same rename callback
as one being unlinked, and only its low-level rename handler knows which: `rename_target` says,
from a wrapper around that handler (`_watch_renames`). It is the only module that touches ctypes.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import mfusepy

from hoodydb.fs import signals

log = logging.getLogger(__name__)

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
    uid, gid, pid = mfusepy.fuse_get_context()
    return int(uid), int(gid), int(pid)


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


# struct fuse_context_i { struct fuse_context ctx; fuse_req_t req; } (lib/fuse.c, unchanged since
# libfuse 2.x): fuse_get_context() points at ctx, the request follows it.
_REQ_OFFSET = ctypes.sizeof(mfusepy.fuse_context)
_INTERRUPT_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_libfuse.fuse_req_interrupt_func.argtypes = [ctypes.c_void_p, _INTERRUPT_FUNC, ctypes.c_void_p]
_libfuse.fuse_req_interrupt_func.restype = None

# A harmless signal (Go's SIGURG) was pending when the kernel interrupted the request; it sends
# no second FUSE_INTERRUPT for a later one, so such a request is looked at this often instead.
RECHECK_SECONDS = 0.1
SESSION_CHECK_SECONDS = 0.2

_watched: dict[int, Interruption] = {}  # parked lock requests by key, while they wait
_fired: queue.SimpleQueue[int] = queue.SimpleQueue()
_keys = itertools.count(1)
_fuse: list[int] = []  # libfuse's struct fuse, seen from the first parked request


@_INTERRUPT_FUNC
def _on_interrupt(req: int | None, key: int | None) -> None:
    # On the libfuse thread that read FUSE_INTERRUPT, holding the request's lock: queue, no more.
    if key:
        _fired.put(key)


def _request() -> int | None:
    ctx = _libfuse.fuse_get_context()
    if not ctx:
        return None
    if not _fuse and ctx.contents.fuse:
        _fuse.append(ctx.contents.fuse)
    return ctypes.c_void_p.from_address(ctypes.addressof(ctx.contents) + _REQ_OFFSET).value


def _session_exited() -> bool:
    return bool(_fuse) and bool(_libfuse.fuse_session_exited(_libfuse.fuse_get_session(_fuse[0])))


def relay_interrupts(shutdown: Callable[[], None]) -> threading.Thread:
    """Start the one thread that wakes parked lock requests for everyone: a request whose client
    was interrupted (libfuse calls back; nobody polls), and all of them once the session ends
    (unmount, SIGTERM: libfuse waits for every request to be answered before it returns)."""

    def run() -> None:
        while True:
            try:
                key = _fired.get(timeout=SESSION_CHECK_SECONDS)
            except queue.Empty:
                if _session_exited():
                    shutdown()
                    return
                continue
            interruption = _watched.get(key)
            if interruption is not None:
                interruption.fired = True
                interruption.wake()

    thread = threading.Thread(target=run, name="hoodydb-interrupts", daemon=True)
    thread.start()
    return thread


class Interruption:
    """The abort check of one lock request (F_SETLKW if `wait`, else F_SETLK or F_GETLK). Parked,
    it is watched (`watch`): libfuse tells the relay thread when the client is interrupted, and
    only then is it asked. It keeps the errno it decided on, which is the answer to an aborted
    wait (answers.py): what the client's pending signals ask (signals.py)."""

    __slots__ = ("_key", "_req", "_wake", "errno", "fired", "recheck", "wait")

    def __init__(self, wait: bool) -> None:
        self.wait = wait
        self.errno: int | None = None
        self.recheck: float | None = None
        self.fired = False
        self._key = 0
        self._req: int | None = None
        self._wake: Callable[[], None] | None = None

    def __call__(self) -> bool:
        if not self.fired:
            if self._key or not _libfuse.fuse_interrupted():
                return False  # (watched: the relay sets `fired`; not watched: asked each time)
            self.fired = True
        self.errno = signals.answer(request_pid(), self.wait)
        if self.errno is None:
            self.recheck = RECHECK_SECONDS
        return self.errno is not None

    def watch(self, wake: Callable[[], None]) -> None:
        req = _request()
        if not req:
            self.recheck = RECHECK_SECONDS  # no request to be told about: ask now and then
            return
        self._key, self._req, self._wake = next(_keys), req, wake
        _watched[self._key] = self
        # If the request was interrupted already, libfuse calls back at once.
        _libfuse.fuse_req_interrupt_func(req, _on_interrupt, self._key)

    def unwatch(self) -> None:
        if self._req:
            # Waits for a callback under way; none comes after this.
            _libfuse.fuse_req_interrupt_func(self._req, _INTERRUPT_FUNC(), None)
            _watched.pop(self._key, None)
            self._req = self._wake = None

    def wake(self) -> None:
        wake = self._wake
        if wake is not None:
            wake()


# struct fuse_session (lib/fuse_i.h) keeps `op`, its copy of the high-level layer's low-level
# handlers, after char *mountpoint, int exited, int fd, struct fuse_custom_io *io (from 3.13),
# struct mount_opts *mo, int debug and int deny_others. In struct fuse_lowlevel_ops (public, only
# ever appended to) rename is the 13th handler; the high-level layer sets the 16 first ones and
# leaves the 17th, write, NULL (it uses write_buf), which is how the offset is checked.
_SESSION_OPS_OFFSET = 40 if _libfuse.fuse_version() >= 313 else 32
_RENAME_SLOT, _SET_SLOTS = 12, 16
_LOW_LEVEL_RENAME = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint
)
_inval_entry = _libfuse.fuse_lowlevel_notify_inval_entry
_inval_entry.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]
_inval_entry.restype = ctypes.c_int
_renaming = threading.local()
_rename_handlers: list[Any] = []  # the wrappers, alive as long as libfuse may call them


def rename_target() -> str | None:
    """The new name of the client's rename this thread serves; None outside a FUSE rename.

    libfuse's high-level layer hides an open file (renames it to `.fuse_hidden...`) both when it
    is unlinked and when a rename replaces it, before that rename, and with the same callback:
    this tells the two apart."""
    return getattr(_renaming, "target", None)


def rename_failed() -> None:
    """The rename this thread serves fails. If libfuse hid its target first, it has that file
    under the hidden name now (and nothing undoes it), while the kernel still finds it by its
    name: once answered, the kernel is told to drop that entry and look the name up again."""
    _renaming.failed = True


def _watch_renames(encoding: str, errors: str) -> bool:
    """Wrap libfuse's low-level rename handler so that `rename_target` knows the rename served
    on each thread. False (and nothing changed) if the session is not laid out as expected."""
    ctx = _libfuse.fuse_get_context()
    if not ctx or not ctx.contents.fuse:
        return False
    session = _libfuse.fuse_get_session(ctx.contents.fuse)
    slots = (ctypes.c_void_p * (_SET_SLOTS + 1)).from_address(session + _SESSION_OPS_OFFSET)
    handler = slots[_RENAME_SLOT]
    if handler is None or not all(slots[:_SET_SLOTS]) or slots[_SET_SLOTS]:
        return False
    original = _LOW_LEVEL_RENAME(handler)

    @_LOW_LEVEL_RENAME
    def rename(req: int, parent: int, name: int, newparent: int, newname: int, flags: int) -> None:
        # Nothing here may raise: libfuse's handler answers the request, and must run.
        target = ctypes.string_at(newname)
        _renaming.target, _renaming.failed = target.decode(encoding, errors), False
        try:
            original(req, parent, name, newparent, newname, flags)
        finally:
            _renaming.target = None
        if _renaming.failed:
            # Only once answered: the kernel drops the entry under the directory's lock, which
            # the client's rename holds until our answer. A name that is not there: ENOENT.
            _inval_entry(session, newparent, target, len(target))

    _rename_handlers.append(rename)
    slots[_RENAME_SLOT] = ctypes.cast(rename, ctypes.c_void_p).value
    return True


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

    def init_fuse_3(self, conn: Any, config: Any) -> None:
        super().init_fuse_3(conn, config)
        # Before any other request: the kernel sends none until INIT is answered.
        if not _watch_renames(self.encoding, self.errors):
            log.warning(
                "libfuse %s: its session is not laid out as expected; a rename over an open file"
                " that fails will have removed that file",
                _libfuse.fuse_version(),
            )

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
