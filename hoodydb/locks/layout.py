"""Where SQLite's unix VFS puts its locks (os_unix.c), and how to name a byte range.

The database file carries PENDING, RESERVED and the SHARED range just past 1 GiB; the WAL index
(-shm) carries eight single-byte locks from offset 120. Test builds of SQLite move PENDING, so the
offset is a parameter rather than a constant.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PENDING_BYTE = 0x40000000
SHARED_SIZE = 510

SHM_WRITE = 120
SHM_CHECKPOINT = 121
SHM_RECOVER = 122
SHM_READ_FIRST = 123
SHM_READ_COUNT = 5
SHM_DMS = 128


@dataclass(frozen=True, slots=True)
class LockLayout:
    pending: int = DEFAULT_PENDING_BYTE

    @property
    def reserved(self) -> int:
        return self.pending + 1

    @property
    def shared_first(self) -> int:
        return self.pending + 2

    def is_pending_byte(self, start: int, end: int) -> bool:
        return start == self.pending and end == self.pending + 1

    @staticmethod
    def is_read_slot(start: int, end: int) -> bool:
        return start >= SHM_READ_FIRST and end <= SHM_READ_FIRST + SHM_READ_COUNT and end == start + 1
