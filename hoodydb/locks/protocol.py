"""What SQLite's lock requests mean: pure checks that read the lock tables and change nothing.

The manager asks these before it decides anything: does this request start a transaction, does it
announce a write, which ranges must be free for it, is an owner's transaction over. Each is a fact
of SQLite's unix VFS (os_unix.c, wal.c; docs/architecture.md, "SQLite's locks"), not a policy.
Requests arrive named (`LockRequest.locks`); files are asked in names (`LockedFile`).
"""

from __future__ import annotations

from hoodydb.locks.files import LockedFile
from hoodydb.locks.layout import READ_SLOT_LOCKS
from hoodydb.locks.types import FileRole, Lock, LockKind, LockRequest, Owner


def is_write_start(req: LockRequest) -> bool:
    """WRLCK on the WAL's WRITE byte or on DMS: a turn of its own whatever the owner's intent.

    The first connection to map the -shm resets it under WRLCK DMS and rebuilds the index, and
    SQLite may take WRITE before any read slot (its recovery path, and every write transaction
    in builds with SQLITE_ENABLE_SETLK_TIMEOUT such as apsw's)."""
    return req.role is FileRole.SHM and req.kind is LockKind.WRITE and req.locks in (Lock.DMS, Lock.WRITE)


def is_read_slot(req: LockRequest) -> bool:
    """RDLCK on one read slot: a WAL transaction takes its snapshot."""
    return req.role is FileRole.SHM and req.kind is LockKind.READ and req.locks in READ_SLOT_LOCKS


def starts_transaction(req: LockRequest, f: LockedFile, wal_ready: bool, shm: LockedFile | None) -> bool:
    """The first lock of a transaction, taken while holding nothing of one.

    `f` is the requested file, `shm` the database's -shm (None before one is locked); `wal_ready`:
    a WAL transaction has completed since the index was last built. (Asked on every lock request:
    each check is made only where it can matter.)
    """
    if is_write_start(req):
        return req.locks != Lock.WRITE or not f.holds(req.owner, Lock.READ_SLOTS)
    if req.kind is not LockKind.READ:
        return False
    if req.role is FileRole.DATABASE:
        # With a working WAL index, a new connection's first read of the database file is not
        # yet its transaction: its snapshot is taken at the read slot. So opening the WAL and
        # -shm happens beside the running transaction instead of inside everyone's turn.
        return req.locks == Lock.PENDING and not f.holds(req.owner) and not (wal_ready and wal_active(shm))
    return is_read_slot(req) and not f.holds(req.owner, Lock.READ_SLOTS)


def is_write_intent(req: LockRequest) -> bool:
    """The owner announces a write inside its transaction: RESERVED (rollback journal), or the
    WAL's WRITE lock taken while it holds a read slot (the caller checks the slot)."""
    return req.kind is LockKind.WRITE and req.locks in (Lock.RESERVED, Lock.WRITE)


def is_mark_write(req: LockRequest) -> bool:
    """WRLCK on read slots: a reader moving a read mark, a writer restarting the WAL
    (walRestartLog) or a checkpointer. Each treats a refusal as "try another way", and a wait
    could close a cycle with the readers it waits for: answered at once, never delayed."""
    return req.role is FileRole.SHM and req.kind is LockKind.WRITE and bool(req.locks & Lock.READ_SLOTS)


def is_recover_probe(req: LockRequest) -> bool:
    """RDLCK on RECOVER: a reader whose header check failed asks whether someone is rebuilding
    the index. Refused, SQLite answers SQLITE_BUSY_RECOVERY ("database is locked") without
    retrying; granted, it retries and reads the rebuilt header. The rebuilder holds DMS, WRITE,
    CKPT and RECOVER and asks nothing the prober holds (it holds no read slot yet): safe to wait."""
    return req.role is FileRole.SHM and req.kind is LockKind.READ and req.locks == Lock.RECOVER


def waits_only_for_marks(f: LockedFile, req: LockRequest) -> bool:
    """A read slot asked while others only move read marks (WRLCK on slots, held for a moment by
    holders that never wait on readers): safe to wait out. SQLite would retry it anyway."""
    if not is_read_slot(req):
        return False
    first, last = f.layout.span(Lock.READ_SLOTS)
    return all(
        seg.kind is LockKind.WRITE and first <= seg.start and seg.end <= last
        for _, seg in f.conflicts(req.owner, req.locks, req.kind)
    )


def spans(req: LockRequest, f: LockedFile) -> list[tuple[int, int]]:
    """The ranges `req` must find free on a gated database file: its own, plus one where SQLite's
    protocol needs it.

    SQLite takes SHARED as the PENDING byte, then the SHARED range. Holding PENDING, a client
    may no longer wait, so it gets PENDING only once the range is free as well. Conversely an
    EXCLUSIVE taken without PENDING (SQLite 3.42 and later, going straight from SHARED: the last
    WAL connection's checkpoint on close) must see a newcomer halfway through that sequence as
    the connection it is. Older SQLite lets go of PENDING before the range when it unlocks;
    newer never takes it: either way a newcomer could end up holding PENDING with the range
    write-locked, and be refused SHARED at once.
    """
    own = [(req.start, req.end)]
    if req.kind is LockKind.READ and req.locks == Lock.PENDING and not f.holds(req.owner):
        own.append(f.layout.span(Lock.SHARED))
    elif (
        req.kind is LockKind.WRITE
        and req.locks == Lock.SHARED
        and not f.holds(req.owner, Lock.PENDING, LockKind.WRITE)
    ):
        own.append(f.layout.span(Lock.PENDING))
    return own


def in_wal_mode(shm: LockedFile | None, owner: Owner) -> bool:
    """The owner has the -shm mapped (holds DMS): its connection is in WAL mode."""
    return shm is not None and shm.holds(owner, Lock.DMS)


def wal_active(shm: LockedFile | None) -> bool:
    """Someone has the -shm mapped."""
    return shm is not None and shm.held_by_anyone(Lock.DMS)


def in_transaction(dbf: LockedFile | None, shm: LockedFile | None, owner: Owner) -> bool:
    """The owner holds a transaction's locks: a read slot or WRITE (WAL), or anything on the
    database file (rollback journal; a WAL connection's kept SHARED does not count)."""
    if shm is not None and (shm.holds(owner, Lock.READ_SLOTS) or shm.holds(owner, Lock.WRITE)):
        return True
    if in_wal_mode(shm, owner):
        return False
    return dbf is not None and dbf.holds(owner)


def changes_the_index(shm: LockedFile | None, dbf: LockedFile | None, owner: Owner) -> bool:
    """The owner holds a write lock that others must not run beside: DMS (building the -shm),
    WRITE, CKPT or RECOVER, or any write lock on the database file."""
    if shm is not None and (
        shm.holds(owner, Lock.DMS, LockKind.WRITE) or shm.holds(owner, Lock.INDEX_WRITE, LockKind.WRITE)
    ):
        return True
    return dbf is not None and dbf.holds(owner, kind=LockKind.WRITE)
