"""Seeing commits at the file-system edge: every write to a database or its WAL passes here.

A turn that wrote can still roll back, so a commit is recognised by what SQLite writes, not by a
turn ending:

- WAL mode (wal.c's format): after a 32-byte header (page size at bytes 8..11), the WAL is a
  sequence of frames, a 24-byte header and a page; bytes 4..7 of a frame header are the database
  size after the commit for the frame that commits, 0 for every other. A commit is a frame header
  written with a non-zero size at a frame index above the last commit seen: SQLite rewrites the
  headers of the transaction's frames in place when it recomputes checksums, and a new WAL header
  (a write below byte 32) starts the count again. The pages of a commit are its frames. A field
  written in pieces is read back from the file once its last byte arrives.
- Rollback journal: every committing transaction changes the database header's change counter
  (bytes 24..27), and its commit point is the journal deleted, truncated or its header zeroed. A
  transaction that rolls back after writing pages plays the journal back, which puts the old
  counter back: no commit. A checkpoint of a WAL database writes the database file too: it is
  told apart by the header's format bytes (18: 1 rollback, 2 WAL). The pages are the writes to
  the database file.

Either way the commit is announced when the writing process next lets go of a lock on the
database or its -shm (SQLite ends the write transaction with an unlock), not at the write: by then
the WAL index is up to date, so a subscriber that reads at once sees the commit, and the commit
is numbered while its writer still holds the turn, so numbers follow the commit order. The kernel
names the writing thread; its process (thread group) is what events report.

A commit that `serve` makes for an API token is named by the token: before a job, the API's
worker thread for a database sets the extended attribute WRITER_XATTR on that database through
the mount (once per change of token), and the commits of that thread carry the name. Only the
`serve` that started this daemon is believed (its pid and start time; another process setting the
attribute gets ENOTSUP, as for every other attribute), and nothing is written to the backing file.

Known limits: a writer in `locking_mode=EXCLUSIVE` unlocks only when it closes, so its commits
are announced then; with `psow=0` and synchronous WAL commits SQLite pads the WAL with copies of
the commit frame, each of which counts as a commit.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hoodydb.fs.feed import CommitFeed
from hoodydb.fs.orphan import started_at
from hoodydb.locks import FileRole

log = logging.getLogger(__name__)

WAL_HEADER = 32
FRAME_HEADER = 24
COMMIT_FIELD = 4  # bytes 4..7 of a frame header: database size after the commit, or 0
DB_HEADER = 28  # enough of the database header for the format bytes and the change counter
FORMAT_BYTE = 18  # its write version: ROLLBACK_FORMAT or WAL_FORMAT
ROLLBACK_FORMAT, WAL_FORMAT = 1, 2
DB, WAL, SHM = "db", "wal", "shm"  # the files of a database that are watched
OWN_STATE = "/.hoodydb/"  # hoodydb.sql.paths.STATE_DIR_NAME: never a database of the feed
WRITER_XATTR = "user.hoodydb.writer"  # set by serve's worker threads: the token they write for
MAX_LABELS = 4096  # labelled threads remembered (serve keeps one thread per open database)


@dataclass(frozen=True, slots=True)
class _Process:
    """A process as events name it: its pid (thread group) and command line."""

    pid: int
    command: str


@dataclass(slots=True)
class _Pending:
    """What a writer did that is announced at its next unlock."""

    tid: int
    process: _Process
    journal: str  # "wal": `frames` are commits already; "rollback": to be checked at the unlock
    frames: list[tuple[float, int]] = field(default_factory=list)  # (when, pages) per WAL commit
    pages: int = 0  # database page writes since the last check (rollback)
    at: float = 0.0
    token: str | None = None  # the API token it wrote for (a labelled serve thread)


@dataclass(slots=True)
class _Database:
    name: str  # path inside the mount, "/team/app.db"
    page_size: int | None = None  # of its WAL, from the WAL header
    last_commit_frame: int = 0  # 1-based index of the last commit frame of the current WAL
    txn_first_frame: int | None = None  # lowest frame written since then: the transaction's first
    counter: bytes | None = None  # change counter at the last check (None: no header yet)
    format: int | None = None  # header byte 18 at the last check
    seen_header: bool = False
    handles: int = 0  # its files open through the mount (watched descriptors)
    # What waits for its writer's unlock, by kind: "wal" (commits seen) and "rollback" (database
    # writes to check). Both at once: a checkpoint copies pages while a WAL commit waits.
    pending: dict[str, _Pending] = field(default_factory=dict)


_Method = TypeVar("_Method", bound=Callable[..., None])


def _never_fails(method: _Method) -> _Method:
    """The client's call has been served when these run: a fault here must not fail it (nor
    stop the mount), it only costs the feed an event. Logged, once per kind of fault."""

    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception as exc:
            key = (method.__name__, type(exc).__name__)
            if key not in _logged:
                _logged.add(key)
                log.exception("commit feed: %s failed (the client's call was served; logged once)", key[0])

    return guarded  # type: ignore[return-value]


_logged: set[tuple[str, str]] = set()


class CommitWatch:
    """Watches the open database and -wal files of a mount and publishes their commits."""

    def __init__(self, root: str, feed: CommitFeed, *, serve_pid: int | None = None) -> None:
        self.root = root
        self.feed = feed
        # The serve that started us, (pid, start time): the one process whose labels are believed.
        self._labeller = (serve_pid, started_at(serve_pid)) if serve_pid else None
        self._labels: dict[int, str] = {}  # thread id -> token name, for threads of the labeller
        self._mu = threading.Lock()
        # fd -> its database, which of its files (DB, WAL or SHM), and the process that opened it
        self._files: dict[int, tuple[_Database, str, _Process | None]] = {}
        self._dbs: dict[str, _Database] = {}
        self.pending = 0  # databases with something to announce: the unlock path's quick test

    # -- file lifecycle --------------------------------------------------------------------------

    @_never_fails
    def opened(self, fd: int, path: str, role: FileRole, tid: int) -> None:
        """`fd` was opened by thread `tid`. Its process is looked up now, once per open: /proc
        costs 50 µs a look, which a kept connection would otherwise pay at every commit."""
        if OWN_STATE in path:
            return  # hoodydb's own files (the API's health check writes there every few seconds)
        if path.endswith("-wal"):
            name, kind = path[: -len("-wal")], WAL
        elif path.endswith("-shm") and role is FileRole.SHM:
            name, kind = path[: -len("-shm")], SHM
        elif role is FileRole.DATABASE:
            name, kind = path, DB
        else:
            return
        opener = None if kind == SHM else _process(tid)  # (not under the lock: /proc is slow)
        with self._mu:
            db = self._dbs.get(name)
            if db is None:
                db = self._dbs[name] = _Database(name)
            db.handles += 1
            if kind == DB and not db.seen_header:
                # Before any write through this mount: the state every later check compares to.
                with contextlib.suppress(OSError):
                    db.counter, db.format = _header(os.pread(fd, DB_HEADER, 0))
                    db.seen_header = True
            self._files[fd] = (db, kind, opener)

    @_never_fails
    def released(self, fd: int) -> None:
        with self._mu:
            watched = self._files.pop(fd, None)
            if watched is None:
                return
            db = watched[0]
            db.handles -= 1
            # A database nobody has open and with nothing to announce is forgotten (bounded memory).
            if not db.handles and not db.pending:
                self._dbs.pop(db.name, None)

    def label(self, tid: int, token: str) -> bool:
        """Thread `tid` writes for API token `token` from now on ("": for nobody). False (and
        nothing kept) unless the thread is the labeller's."""
        if self._labeller is None or _process_of(tid) != self._labeller[0]:
            return False
        if started_at(self._labeller[0]) != self._labeller[1]:
            return False  # our serve is gone and its pid was reused
        with self._mu:
            if not token:
                self._labels.pop(tid, None)
            elif tid in self._labels or len(self._labels) < MAX_LABELS:
                self._labels[tid] = token
        return True

    def _token(self, tid: int, process: _Process) -> str | None:
        """The token a write by thread `tid` of `process` is for (a thread id may have been reused
        by another process since it was labelled)."""
        token = self._labels.get(tid)
        return token if token is not None and self._labeller and process.pid == self._labeller[0] else None

    # -- writes ----------------------------------------------------------------------------------

    def watches(self, fd: int) -> bool:
        return fd in self._files

    @_never_fails
    def wrote(self, fd: int, data: bytes | memoryview, offset: int, tid: Callable[[], int]) -> None:
        """`data` was just written at `offset` of `fd` by the thread `tid()` names (asked only
        when needed: most WAL writes are not commits)."""
        watched = self._files.get(fd)
        if watched is None or watched[1] == SHM or not data:
            return
        db, kind, opener = watched
        with self._mu:
            if kind == WAL:
                self._wal_wrote(db, fd, data, offset, tid, opener)
            elif db.format != WAL_FORMAT or _format_written(data, offset) == ROLLBACK_FORMAT:
                # (A WAL database's file is written by checkpoints only, unless a transaction
                # switches it back to a rollback journal.)
                pending = self._pending(db, tid(), "rollback", opener)
                pending.pages += 1
                pending.at = time.time()

    def _pending(self, db: _Database, tid: int, journal: str, opener: _Process | None) -> _Pending:
        pending = db.pending.get(journal)
        if pending is None:
            if not db.pending:
                self.pending += 1
            process = _writer(tid, opener)
            pending = db.pending[journal] = _Pending(tid, process, journal, token=self._token(tid, process))
        elif tid != pending.tid:  # a hot journal's rollback by another process: its unlock decides
            pending.tid, pending.process = tid, _writer(tid, opener)
            pending.token = self._token(tid, pending.process)
        return pending

    def _wal_wrote(
        self,
        db: _Database,
        fd: int,
        data: bytes | memoryview,
        offset: int,
        tid: Callable[[], int],
        opener: _Process | None,
    ) -> None:
        end = offset + len(data)
        if offset < WAL_HEADER:  # a new WAL header: SQLite restarted the WAL, frames count from 1
            db.last_commit_frame = 0
            db.txn_first_frame = None
            db.page_size = None
        if db.page_size is None:
            raw = bytes(data[8 - offset : 12 - offset]) if offset <= 8 and end >= 12 else os.pread(fd, 4, 8)
            size = int.from_bytes(raw, "big") if len(raw) == 4 else 0
            if size < 512 or size > 65536 or size & (size - 1):
                return  # no valid header yet
            db.page_size = size
        frame = FRAME_HEADER + db.page_size
        # Frame i's commit field is [h + 4, h + 8), h = 32 + i * frame: those whose last byte is
        # in this write.
        last_byte = WAL_HEADER + COMMIT_FIELD + COMMIT_FIELD  # field end of frame 0
        first = max(0, (offset - last_byte) // frame + 1) if offset >= last_byte else 0
        i = first
        while (field_end := WAL_HEADER + i * frame + 2 * COMMIT_FIELD) <= end:
            field_start = field_end - COMMIT_FIELD
            if field_start >= offset:
                raw = bytes(data[field_start - offset : field_end - offset])
            else:
                raw = os.pread(fd, COMMIT_FIELD, field_start)
            index = i + 1
            i += 1
            if index <= db.last_commit_frame:
                continue  # a header rewritten in place, or a frame of a commit already seen
            first = db.txn_first_frame = min(index, db.txn_first_frame or index)
            if int.from_bytes(raw, "big"):
                pending = self._pending(db, tid(), "wal", opener)
                pending.frames.append((time.time(), index - first + 1))
                db.last_commit_frame = index
                db.txn_first_frame = None

    # -- unlocks ---------------------------------------------------------------------------------

    @_never_fails
    def unlocked(self, fd: int, tid: int) -> None:
        """Thread `tid` let go of a lock on `fd` (a database or its -shm): announce its commits."""
        watched = self._files.get(fd)
        if watched is None:
            return
        db, kind, _ = watched
        with self._mu:
            for pending in list(db.pending.values()):
                if not _same_process(pending, tid):
                    continue
                commits: list[tuple[float, int, str]] | None
                if pending.journal == "wal":
                    commits = [(at, pages, "wal") for at, pages in pending.frames]
                elif kind == DB:
                    commits = self._rollback_commits(db, fd, pending)
                    if commits is None:
                        continue  # the journal is still hot: not committed (yet)
                else:
                    continue
                del db.pending[pending.journal]
                if not db.pending:
                    self.pending -= 1
                for at, pages, journal in commits:
                    self.feed.publish(
                        db.name.removeprefix("/"),
                        pid=pending.process.pid,
                        command=pending.process.command,
                        pages=pages,
                        journal=journal,
                        at=at,
                        token=pending.token,
                    )

    def _rollback_commits(
        self, db: _Database, fd: int, pending: _Pending
    ) -> list[tuple[float, int, str]] | None:
        if _journal_hot(self.root + db.name + "-journal"):
            return None
        counter, fmt = _header(os.pread(fd, DB_HEADER, 0))
        committed = counter != db.counter and ROLLBACK_FORMAT in (fmt, db.format)
        db.counter, db.format = counter, fmt
        return [(pending.at, pending.pages, "rollback")] if committed else []

    # -- processes -------------------------------------------------------------------------------


def _same_process(pending: _Pending, tid: int) -> bool:
    """Is thread `tid` of the writer's process?"""
    return tid == pending.tid or _in_process(pending.process.pid, tid)


def _in_process(pid: int, tid: int) -> bool:
    """Is thread `tid` one of process `pid`'s now? (One stat: its tasks directory.)"""
    return tid == pid or (tid > 0 and os.path.exists(f"/proc/{pid}/task/{tid}"))


def _writer(tid: int, opener: _Process | None) -> _Process:
    """The process of thread `tid`, which wrote through a file that `opener` opened: usually
    that process (its thread, now, so neither can be a reused id); else looked up (a child that
    inherited the descriptor)."""
    if opener is not None and _in_process(opener.pid, tid):
        return opener
    return _process(tid)


def _process(tid: int) -> _Process:
    """The process of thread `tid` (the kernel gives the mount thread ids), from /proc."""
    pid = _process_of(tid)
    return _Process(pid, _cmdline(pid))


def _process_of(tid: int) -> int:
    """The pid (thread group) of thread `tid`; `tid` itself if /proc cannot say."""
    with contextlib.suppress(OSError, ValueError):
        for line in _read(f"/proc/{tid}/status", 1024).splitlines():
            if line.startswith(b"Tgid:"):
                return int(line.split()[1])
    return tid


def _read(path: str, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def _format_written(data: bytes | memoryview, offset: int) -> int | None:
    """Database header byte 18 (1 rollback journal, 2 WAL), if this write carries it."""
    if not offset <= FORMAT_BYTE < offset + len(data):
        return None
    return bytes(data[FORMAT_BYTE - offset : FORMAT_BYTE - offset + 1])[
        0
    ]  # (views of libfuse's buffer are "c")


def _header(raw: bytes) -> tuple[bytes | None, int | None]:
    if len(raw) < DB_HEADER:
        return None, None
    return raw[24:28], raw[18]


def _journal_hot(path: str) -> bool:
    """SQLite's own test (pager.c hasHotJournal): a journal that exists, is not empty and whose
    first byte is not zero still holds a transaction."""
    try:
        with open(path, "rb") as f:
            return f.read(1) not in (b"", b"\0")
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        raw = _read(f"/proc/{pid}/cmdline", 65536)
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()
