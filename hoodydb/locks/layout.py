"""Where SQLite's unix VFS puts its named locks (os_unix.c): the one place that knows.

The database file carries PENDING, RESERVED and the SHARED range just past 1 GiB; the WAL index
(-shm) carries eight single-byte locks from offset 120. Test builds of SQLite move PENDING, so its
offset is a setting rather than a constant. The adapter names every request's range here
(`LockLayout.names`) and the core reasons in names; byte ranges stay only where POSIX needs them
(the range tables, and the spans a request must find free).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from hoodydb.locks.types import FileRole, Lock

DEFAULT_PENDING_BYTE = 0x40000000
SHARED_SIZE = 510

SHM_WRITE = 120  # the first of the -shm's locks


# The -shm's locks, one byte each from SHM_WRITE on.
SHM_LOCKS = (
    *(Lock.WRITE, Lock.CKPT, Lock.RECOVER),
    *(Lock.READ0, Lock.READ1, Lock.READ2, Lock.READ3, Lock.READ4),
    Lock.DMS,
)
READ_SLOT_LOCKS = frozenset(SHM_LOCKS[3:8])  # each read slot on its own
DATABASE_LOCKS = Lock.PENDING | Lock.RESERVED | Lock.SHARED


@dataclass(frozen=True, slots=True)
class LockLayout:
    pending: int = DEFAULT_PENDING_BYTE

    @property
    def reserved(self) -> int:
        return self.pending + 1

    @property
    def shared_first(self) -> int:
        return self.pending + 2

    def names(self, role: FileRole, start: int, end: int) -> Lock:
        """The named locks that [start, end) covers on a file of this role (NONE for other files)."""
        return _names(self, role, start, end)

    def span(self, locks: Lock) -> tuple[int, int]:
        """The byte range of a lock, or of adjacent locks of one file (READ_SLOTS, INDEX_WRITE)."""
        return _span(self, locks)


# SQLite asks for a handful of distinct ranges, on every lock call: each is worked out once.
@functools.lru_cache(maxsize=1024)
def _names(layout: LockLayout, role: FileRole, start: int, end: int) -> Lock:
    found = Lock.NONE
    if role is FileRole.DATABASE:
        for lock, (first, last) in (
            (Lock.PENDING, (layout.pending, layout.reserved)),
            (Lock.RESERVED, (layout.reserved, layout.shared_first)),
            (Lock.SHARED, (layout.shared_first, layout.shared_first + SHARED_SIZE)),
        ):
            if start < last and first < end:
                found |= lock
    elif role is FileRole.SHM:
        for offset in range(max(start, SHM_WRITE), min(end, SHM_WRITE + len(SHM_LOCKS))):
            found |= SHM_LOCKS[offset - SHM_WRITE]
    return found


@functools.lru_cache(maxsize=64)
def _span(layout: LockLayout, locks: Lock) -> tuple[int, int]:
    if locks & DATABASE_LOCKS:
        offsets = [
            layout.pending + i for i, lock in enumerate((Lock.PENDING, Lock.RESERVED)) if lock in locks
        ]
        if Lock.SHARED in locks:
            offsets += [layout.shared_first, layout.shared_first + SHARED_SIZE - 1]
    else:
        offsets = [SHM_WRITE + i for i, lock in enumerate(SHM_LOCKS) if lock in locks]
    return min(offsets), max(offsets) + 1
