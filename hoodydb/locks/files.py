"""One file's locks as the core sees them: its POSIX table, asked in SQLite's lock names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hoodydb.locks.layout import LockLayout
from hoodydb.locks.ranges import RangeTable, Segment
from hoodydb.locks.types import FileKey, FileRole, Lock, LockKind, Owner


@dataclass(eq=False)
class LockedFile:
    key: FileKey
    role: FileRole
    db: FileKey | None  # the database it belongs to (itself, for a database file)
    layout: LockLayout
    table: RangeTable = field(default_factory=RangeTable)
    waiters: set[Callable[[], None]] = field(default_factory=set)  # wake-ups of requests waiting here

    def holds(self, owner: Owner, locks: Lock | None = None, kind: LockKind | None = None) -> bool:
        """Does `owner` hold any of `locks` (any lock at all: None), of `kind` if given?"""
        if locks is None:
            return self.table.holds(owner, kind=kind)
        return self.table.holds(owner, *self.layout.span(locks), kind)

    def held_by_anyone(self, locks: Lock) -> bool:
        return self.table.held_by_anyone(*self.layout.span(locks))

    def conflicts(self, owner: Owner, locks: Lock, kind: LockKind) -> list[tuple[Owner, Segment]]:
        """Other owners' segments that keep `owner` from taking `kind` on `locks`."""
        return self.table.conflicts(owner, *self.layout.span(locks), kind)

    def wake_waiters(self) -> None:
        for wake in self.waiters:
            wake()
