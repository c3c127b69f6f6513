"""The lock core's test harness: simulated SQLite clients driving a LockManager without FUSE.

Each simulated client is one lock owner (one process) that issues SQLite's lock sequences
(docs/architecture.md, "SQLite's locks"). Requests that may wait run in their own threads (`Bg`);
timeouts and poll intervals are small so that the tests run in seconds.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hoodydb.fs import answers
from hoodydb.locks.layout import (
    LockLayout,
)
from hoodydb.locks.manager import LockManager
from hoodydb.locks.settings import LockSettings
from hoodydb.locks.types import (
    EOF_OFFSET,
    Conflict,
    FileKey,
    FileRole,
    Lock,
    LockKind,
    LockRequest,
    Outcome,
    Policy,
)

R, W, U = LockKind.READ, LockKind.WRITE, LockKind.UNLOCK
LAYOUT = LockLayout(pending=0x10000)  # a testfixture-style layout: nothing may assume the default
# The byte ranges a client sends, from the layout's names: the harness plays the adapter.
PENDING = LAYOUT.span(Lock.PENDING)
RESERVED = LAYOUT.span(Lock.RESERVED)
SHARED = LAYOUT.span(Lock.SHARED)
PENDING_TO_SHARED = LAYOUT.span(Lock.PENDING | Lock.RESERVED)
WHOLE = (0, EOF_OFFSET)
SLOT = LAYOUT.span(Lock.READ1)
READ0_SLOT = LAYOUT.span(Lock.READ0)  # the slot of a fully checkpointed WAL
WRITE_LOCK = LAYOUT.span(Lock.WRITE)
CHECKPOINT = LAYOUT.span(Lock.CKPT)
DMS = LAYOUT.span(Lock.DMS)

DB: FileKey = (1, 100)
SHM: FileKey = (1, 101)
DB2: FileKey = (1, 200)
PLAIN: FileKey = (1, 300)

SOON = 2.0  # how long a thread may take to do something that should be immediate


def make_manager(**kw: Any) -> LockManager:
    """A manager with small timeouts; `kw` sets LockSettings fields, and `clock`, `working` or
    `host_busy`.

    The strict policy by default: tests of `beside`, the default, are in test_beside.py."""
    hooks = {name: kw.pop(name) for name in ("clock", "working", "host_busy") if name in kw}
    fields: dict[str, Any] = {
        "layout": LAYOUT,
        "lock_timeout": 5.0,
        "poll_interval": 0.02,
        "policy": Policy.SERIAL,
    }
    fields.update(kw)
    return LockManager(LockSettings(**fields), **hooks)


class ErrnoAbort:
    """An abort check like the adapter's (fs/binding.py): a test's function decides the errno."""

    def __init__(self, decide: Callable[[], int | None]) -> None:
        self.decide = decide
        self.errno: int | None = None

    def __call__(self) -> bool:
        self.errno = self.decide()
        return self.errno is not None


def setlk(mgr: LockManager, req: LockRequest, abort: Callable[[], int | None] | None = None) -> int:
    """The answer the client gets: the manager's outcome as the adapter maps it (fs/answers.py)."""
    check = ErrnoAbort(abort or (lambda: None))
    outcome: Outcome = mgr.setlk(req, check)
    return answers.errno_for(outcome, req.wait, check.errno)


def request(
    file: FileKey, role: FileRole, owner: int, span: tuple[int, int], kind: LockKind, **kw: Any
) -> LockRequest:
    """A request as the adapter builds it: its range named by the layout."""
    db = kw.pop("db", file)
    locks = LAYOUT.names(role, *span)
    return LockRequest(file, db, role, owner, 1000 + owner, *span, kind, locks=locks, **kw)


def snapshot(mgr: LockManager) -> list[dict[str, Any]]:
    return [d.as_dict() for d in mgr.snapshot()]


@dataclass
class Client:
    """One process using SQLite: every request it makes carries its owner and pid."""

    mgr: LockManager
    owner: int
    db: FileKey = DB
    shm: FileKey = SHM
    readonly: bool = False
    handle: int = -1  # the connection's open file; -1: unknown, as for a request without one

    @property
    def pid(self) -> int:
        return 1000 + self.owner

    def lock(
        self,
        file: FileKey,
        role: FileRole,
        kind: LockKind,
        span: tuple[int, int],
        *,
        db: FileKey | None = None,
        wait: bool = False,
        abort: Callable[[], int | None] | None = None,
    ) -> int:
        req = LockRequest(
            file=file,
            db=self.db if db is None else db,
            role=role,
            owner=self.owner,
            pid=self.pid,
            start=span[0],
            end=span[1],
            kind=kind,
            readonly=self.readonly and role is FileRole.DATABASE,
            wait=wait,
            handle=self.handle,
            locks=self.mgr.layout.names(role, *span),
        )
        return setlk(self.mgr, req, abort)

    def dbf(self, kind: LockKind, span: tuple[int, int], **kw: Any) -> int:
        return self.lock(self.db, FileRole.DATABASE, kind, span, **kw)

    def shmf(self, kind: LockKind, span: tuple[int, int], **kw: Any) -> int:
        return self.lock(self.shm, FileRole.SHM, kind, span, **kw)

    def getlk(self, file: FileKey, role: FileRole, kind: LockKind, span: tuple[int, int]) -> Conflict | None:
        locks = self.mgr.layout.names(role, *span)
        return self.mgr.getlk(
            LockRequest(file, self.db, role, self.owner, self.pid, span[0], span[1], kind, locks=locks)
        )

    # -- SQLite's sequences (docs/architecture.md) --------------------------------------------------------

    def begin(self) -> int:
        """Journal mode, start of any transaction: SHARED via PENDING. May wait for the turn."""
        rc = self.dbf(R, PENDING)
        if rc:
            return rc
        assert self.dbf(R, SHARED) == 0
        assert self.dbf(U, PENDING) == 0
        return 0

    def write_and_commit(self) -> None:
        assert self.dbf(W, RESERVED) == 0
        assert self.dbf(W, PENDING) == 0
        assert self.dbf(W, SHARED) == 0

    def end(self) -> None:
        assert self.dbf(R, SHARED) == 0  # downgrade
        assert self.dbf(U, PENDING_TO_SHARED) == 0
        assert self.dbf(U, WHOLE) == 0

    def wal_open(self) -> None:
        """WAL: SHARED on the database (kept), the DMS check and read lock, one first transaction."""
        assert self.begin() == 0
        conflict = self.getlk(self.shm, FileRole.SHM, W, DMS)
        assert conflict is None or conflict.kind is R
        assert self.shmf(R, DMS) == 0
        assert self.shmf(R, SLOT) == 0
        assert self.shmf(U, SLOT) == 0

    def wal_begin(self) -> tuple[int, int]:
        """A WAL transaction start: RDLCK on a read slot, retried on EAGAIN as SQLite does.

        Returns (answer, number of EAGAIN retries)."""
        retries = 0
        while True:
            rc = self.shmf(R, SLOT)
            if rc != errno.EAGAIN or retries >= 3:
                return rc, retries
            retries += 1

    def wal_write(self) -> None:
        assert self.shmf(W, WRITE_LOCK) == 0
        assert self.shmf(U, WRITE_LOCK) == 0

    def wal_close(self) -> None:
        # Try EXCLUSIVE to checkpoint; failing is normal and must be immediate.
        for span in (RESERVED, PENDING, SHARED):
            if self.dbf(W, span) != 0:
                break
        assert self.shmf(U, WHOLE) == 0
        assert self.dbf(U, WHOLE) == 0


@dataclass
class Bg:
    """A call running in a daemon thread, with its answer and the time it took."""

    fn: Callable[[], Any]
    result: Any = None
    error: BaseException | None = None
    elapsed: float = 0.0
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        try:
            self.result = self.fn()
        except BaseException as e:
            self.error = e
        self.elapsed = time.monotonic() - t0

    def get(self, timeout: float = SOON) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "call still blocked"
        if self.error is not None:
            raise self.error
        return self.result

    def blocked(self, settle: float = 0.05) -> bool:
        time.sleep(settle)
        return self.thread.is_alive()


def wait_until(pred: Callable[[], bool], timeout: float = SOON) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def db_snapshot(mgr: LockManager, name: str) -> dict[str, Any]:
    (found,) = [d for d in snapshot(mgr) if d["database"] == name]
    return found


def waiting(mgr: LockManager, name: str = "db") -> int:
    return len(db_snapshot(mgr, name)["waiting"])


def queue_is(mgr: LockManager, n: int) -> bool:
    return waiting(mgr) == n


def admitted_pid(mgr: LockManager, name: str = "db") -> int | None:
    adm = db_snapshot(mgr, name)["admitted"]
    return None if adm is None else int(adm["pid"])


def clients(mgr: LockManager, n: int, **kw: Any) -> list[Client]:
    return [Client(mgr, owner, **kw) for owner in range(1, n + 1)]


def wal_clients(mgr: LockManager, n: int) -> list[Client]:
    """`n` clients, each with its WAL connection open (`Client.wal_open`)."""
    opened = clients(mgr, n)
    for c in opened:
        c.wal_open()
    return opened
