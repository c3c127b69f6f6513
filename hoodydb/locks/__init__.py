"""The lock core: pure Python, no I/O, no FUSE.

What the adapter (hoodydb/fs) uses: it builds a `LockManager` from `LockSettings`, names each
request's byte range with the settings' `LockLayout` into a `LockRequest`, calls `setlk` or
`getlk`, and turns the `Outcome` into an errno in one place (fs/answers.py). `snapshot()` gives
the `DatabaseReport`s that `hoodydb locks` shows. Everything else in this package is internal:
`database` (one database's policy), `gate` (its turn and queue), `intents`, `protocol`, `files`,
`ranges`, `waiting`.
"""

from hoodydb.locks.layout import DEFAULT_PENDING_BYTE, LockLayout
from hoodydb.locks.manager import LockManager
from hoodydb.locks.report import DatabaseReport
from hoodydb.locks.settings import DEFAULT_LOCK_TIMEOUT, LockSettings
from hoodydb.locks.types import (
    EOF_OFFSET,
    Conflict,
    FileKey,
    FileRole,
    Lock,
    LockKind,
    LockRequest,
    Outcome,
    Owner,
    Policy,
)
from hoodydb.locks.waiting import AbortCheck, Watchable

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_PENDING_BYTE",
    "EOF_OFFSET",
    "AbortCheck",
    "Conflict",
    "DatabaseReport",
    "FileKey",
    "FileRole",
    "Lock",
    "LockKind",
    "LockLayout",
    "LockManager",
    "LockRequest",
    "LockSettings",
    "Outcome",
    "Owner",
    "Policy",
    "Watchable",
]
