"""Shared vocabulary of the lock core: lock kinds, file roles, requests and answers."""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: Stands for "to end of file" (l_len == 0): larger than any offset a client can name.
EOF_OFFSET = 1 << 63

FileKey = tuple[int, int]
"""(st_dev, st_ino) of the backing file: paths change and vanish, inodes do not."""

Owner = int
"""The kernel's lock_owner: one per process (files_struct) for POSIX locks."""


class Lock(enum.Flag):
    """A set of SQLite's named locks (what a byte range covers)."""

    NONE = 0
    # the database file
    PENDING = enum.auto()
    RESERVED = enum.auto()
    SHARED = enum.auto()  # RDLCK: reading; WRLCK: EXCLUSIVE
    # the WAL index (-shm), in byte order from offset 120
    WRITE = enum.auto()  # the one writer of the WAL
    CKPT = enum.auto()  # a checkpointer
    RECOVER = enum.auto()  # the WAL index being rebuilt
    READ0 = enum.auto()  # read slots: a reader's snapshot mark (RDLCK), a mark moved (WRLCK)
    READ1 = enum.auto()
    READ2 = enum.auto()
    READ3 = enum.auto()
    READ4 = enum.auto()
    DMS = enum.auto()  # the -shm is mapped (RDLCK); the first one resets it (WRLCK)

    READ_SLOTS = READ0 | READ1 | READ2 | READ3 | READ4
    INDEX_WRITE = WRITE | CKPT | RECOVER  # changing the WAL or its index


class LockKind(enum.Enum):
    READ = "read"
    WRITE = "write"
    UNLOCK = "unlock"


class FileRole(enum.Enum):
    DATABASE = "database"  # the main SQLite file (or any file that is not one of the roles below)
    SHM = "shm"  # the WAL index: "<db>-shm"
    OTHER = "other"  # journals, WAL files, anything that never carries SQLite's lock protocol


class Policy(enum.Enum):
    BESIDE = "beside"  # writers take turns at their snapshot, FIFO; readers run beside (the default)
    SERIAL = "serial"  # every transaction not opened read-only takes a turn, FIFO
    OFF = "off"  # plain POSIX: every conflict is answered at once, as on a local disk


class Outcome(enum.Enum):
    """The lock core's answer to a request; the adapter (fs/answers.py) turns it into an errno."""

    GRANTED = "granted"
    BUSY = "busy"  # a conflict that may not wait, or a write refused while another writer has the turn
    TIMEOUT = "timeout"  # waited the lock timeout (`--lock-timeout`) for the turn or the lock
    DEADLOCK = "deadlock"  # waiting would close a cycle in the wait-for graph
    FULL = "full"  # the parked-request bound is reached
    CLOSING = "closing"  # the daemon is shutting down
    ABORTED = "aborted"  # the adapter's abort check ended the wait (its signals decide the errno)


@dataclass(slots=True)  # not frozen: built on every lock call, and frozen __init__ costs 3x
class LockRequest:
    """One F_SETLK/F_SETLKW/F_GETLK as the kernel delivered it, translated to byte ranges.

    Treat as immutable."""

    file: FileKey
    db: FileKey | None  # the database this file belongs to; None for files outside SQLite's protocol
    role: FileRole
    owner: Owner
    pid: int
    start: int
    end: int  # exclusive; EOF_OFFSET for "to end of file"
    kind: LockKind
    readonly: bool = False  # the handle was opened O_RDONLY
    wait: bool = False  # F_SETLKW: the caller asked to block
    handle: int = -1  # the open file (one per connection) it came through; -1 when unknown
    locks: Lock = Lock.NONE  # SQLite's locks the range covers (LockLayout.names)


@dataclass(frozen=True, slots=True)
class Conflict:
    """What F_GETLK reports: the first lock that stands in the way."""

    kind: LockKind
    start: int
    end: int
    pid: int
