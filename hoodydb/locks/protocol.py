"""What SQLite's lock requests mean: pure checks that read the lock tables and change nothing.

The manager asks these before it decides anything: does this request start a transaction, does it
announce a write, which ranges must be free for it, is an owner's transaction over. Each is a fact
of SQLite's unix VFS (os_unix.c, wal.c; docs/architecture.md, "SQLite's locks"), not a policy.
"""

from __future__ import annotations

from hoodydb.locks.layout import (
    SHARED_SIZE,
    SHM_DMS,
    SHM_READ_COUNT,
    SHM_READ_FIRST,
    SHM_RECOVER,
    SHM_WRITE,
    LockLayout,
)
from hoodydb.locks.ranges import RangeTable
from hoodydb.locks.types import FileRole, LockKind, LockRequest, Owner

READ_SLOTS = (SHM_READ_FIRST, SHM_READ_FIRST + SHM_READ_COUNT)
WRITE_BYTE = (SHM_WRITE, SHM_WRITE + 1)
DMS_BYTE = (SHM_DMS, SHM_DMS + 1)
RECOVER_BYTE = (SHM_RECOVER, SHM_RECOVER + 1)
# The WAL index's locks that mean "I am changing the index or the WAL": WRITE, CKPT, RECOVER.
INDEX_WRITE_LOCKS = (SHM_WRITE, SHM_READ_FIRST)


def _on(req: LockRequest, span: tuple[int, int]) -> bool:
    return req.start < span[1] and span[0] < req.end


def is_write_start(req: LockRequest) -> bool:
    """WRLCK on the WAL's WRITE byte or on DMS: a turn of its own whatever the owner's intent.

    The first connection to map the -shm resets it under WRLCK DMS and rebuilds the index, and
    SQLite may take WRITE before any read slot (its recovery path, and every write transaction
    in builds with SQLITE_ENABLE_SETLK_TIMEOUT such as apsw's)."""
    return (
        req.role is FileRole.SHM
        and req.kind is LockKind.WRITE
        and (req.start, req.end) in (DMS_BYTE, WRITE_BYTE)
    )


def starts_transaction(
    layout: LockLayout, req: LockRequest, table: RangeTable, wal_ready: bool, shm: RangeTable | None
) -> bool:
    """The first lock of a transaction, taken while holding nothing of one.

    `table` is the requested file's, `shm` the database's -shm's (None before one is locked);
    `wal_ready`: a WAL transaction has completed since the index was last built. (Asked on every
    lock request: each check is made only where it can matter.)
    """
    if is_write_start(req):
        return (req.start, req.end) != WRITE_BYTE or not table.holds(req.owner, *READ_SLOTS)
    if req.kind is not LockKind.READ:
        return False
    if req.role is FileRole.DATABASE:
        # With a working WAL index, a new connection's first read of the database file is not
        # yet its transaction: its snapshot is taken at the read slot. So opening the WAL and
        # -shm happens beside the running transaction instead of inside everyone's turn.
        return (
            layout.is_pending_byte(req.start, req.end)
            and not table.holds(req.owner)
            and not (wal_ready and wal_active(shm))
        )
    if req.role is FileRole.SHM:
        return layout.is_read_slot(req.start, req.end) and not table.holds(req.owner, *READ_SLOTS)
    return False


def is_write_intent(layout: LockLayout, req: LockRequest) -> bool:
    """The owner announces a write inside its transaction: RESERVED (rollback journal), or the
    WAL's WRITE lock taken while it holds a read slot (the caller checks the slot)."""
    if req.kind is not LockKind.WRITE:
        return False
    if req.role is FileRole.DATABASE:
        return req.start == layout.reserved and req.end == layout.reserved + 1
    return req.role is FileRole.SHM and (req.start, req.end) == WRITE_BYTE


def is_mark_write(req: LockRequest) -> bool:
    """WRLCK on read slots: a reader moving a read mark, a writer restarting the WAL
    (walRestartLog) or a checkpointer. Each treats a refusal as "try another way", and a wait
    could close a cycle with the readers it waits for: answered at once, never delayed."""
    return req.role is FileRole.SHM and req.kind is LockKind.WRITE and _on(req, READ_SLOTS)


def is_read_slot(req: LockRequest) -> bool:
    """RDLCK on a read slot: a WAL transaction takes its snapshot."""
    return req.role is FileRole.SHM and req.kind is LockKind.READ and _on(req, READ_SLOTS)


def is_recover_probe(req: LockRequest) -> bool:
    """RDLCK on RECOVER: a reader whose header check failed asks whether someone is rebuilding
    the index. Refused, SQLite answers SQLITE_BUSY_RECOVERY ("database is locked") without
    retrying; granted, it retries and reads the rebuilt header. The rebuilder holds DMS, WRITE,
    CKPT and RECOVER and asks nothing the prober holds (it holds no read slot yet): safe to wait."""
    return req.role is FileRole.SHM and req.kind is LockKind.READ and (req.start, req.end) == RECOVER_BYTE


def waits_only_for_marks(table: RangeTable, req: LockRequest) -> bool:
    """A read slot asked while others only move read marks (WRLCK on slots, held for a moment by
    holders that never wait on readers): safe to wait out. SQLite would retry it anyway."""
    if (
        req.role is not FileRole.SHM
        or req.kind is not LockKind.READ
        or not LockLayout.is_read_slot(req.start, req.end)
    ):
        return False
    return all(
        seg.kind is LockKind.WRITE and READ_SLOTS[0] <= seg.start and seg.end <= READ_SLOTS[1]
        for _, seg in table.conflicts(req.owner, req.start, req.end, req.kind)
    )


def spans(layout: LockLayout, req: LockRequest, table: RangeTable) -> list[tuple[int, int]]:
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
    pending = (layout.pending, layout.pending + 1)
    shared = (layout.shared_first, layout.shared_first + SHARED_SIZE)
    if req.kind is LockKind.READ and own[0] == pending and not table.holds(req.owner):
        own.append(shared)
    elif (
        req.kind is LockKind.WRITE
        and own[0] == shared
        and not table.holds(req.owner, *pending, LockKind.WRITE)
    ):
        own.append(pending)
    return own


def in_wal_mode(shm: RangeTable | None, owner: Owner) -> bool:
    """The owner has the -shm mapped (holds DMS): its connection is in WAL mode."""
    return shm is not None and shm.holds(owner, *DMS_BYTE)


def wal_active(shm: RangeTable | None) -> bool:
    """Someone has the -shm mapped."""
    return shm is not None and shm.held_by_anyone(*DMS_BYTE)


def in_transaction(dbf: RangeTable | None, shm: RangeTable | None, owner: Owner) -> bool:
    """The owner holds a transaction's locks: a read slot or WRITE (WAL), or anything on the
    database file (rollback journal; a WAL connection's kept SHARED does not count)."""
    if shm is not None and (shm.holds(owner, *READ_SLOTS) or shm.holds(owner, *WRITE_BYTE)):
        return True
    if in_wal_mode(shm, owner):
        return False
    return dbf is not None and dbf.holds(owner)


def changes_the_index(shm: RangeTable | None, dbf: RangeTable | None, owner: Owner) -> bool:
    """The owner holds a write lock that others must not run beside: DMS (building the -shm),
    WRITE, CKPT or RECOVER, or any write lock on the database file."""
    if shm is not None and (
        shm.holds(owner, *DMS_BYTE, LockKind.WRITE) or shm.holds(owner, *INDEX_WRITE_LOCKS, LockKind.WRITE)
    ):
        return True
    return dbf is not None and dbf.holds(owner, kind=LockKind.WRITE)
