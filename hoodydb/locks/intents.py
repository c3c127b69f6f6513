"""What each lock owner has shown it does with each database: the knowledge policy `beside` needs.

When a transaction takes its snapshot the daemon cannot know whether it will write, and a
transaction that writes needs a snapshot taken after the previous commit. So writers take turns at
their snapshot and readers run beside; which is which is learned from what each owner (process)
did before on that database, for as long as it keeps the database open.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hoodydb.locks.types import FileKey, Owner

Key = tuple[FileKey, Owner]  # (database, owner)


class Intent(enum.Enum):
    NEW = "new"  # nothing known: its turn is a window (gate.py)
    READER = "reader"  # a long transaction of it read only: its window passed the turn on
    WRITER = "writer"  # it has taken RESERVED or the WAL's WRITE lock


@dataclass(slots=True)
class Beside:
    """A transaction running beside the turn: a reader's, or a window that passed the turn on."""

    pid: int
    since: float
    learn: bool  # its end without a write makes its owner a reader (not so for a schema read)


class Intents:
    """Intent per (database, owner), kept while the owner has a handle of the database open.

    An owner is one process (the kernel's lock owner); the handles it locked through are its
    connections' files. When the last of them is closed, what was learned is forgotten, so a new
    process that gets a freed owner id starts as NEW, and the table stays as small as the set
    of open connections.
    """

    __slots__ = ("_handles", "_intent", "_keys")

    def __init__(self) -> None:
        self._intent: dict[Key, Intent] = {}
        self._handles: dict[Key, set[int]] = {}
        self._keys: dict[int, set[Key]] = {}  # handle -> keys that locked through it

    def __len__(self) -> int:
        return len(self._handles)

    def of(self, db: FileKey, owner: Owner) -> Intent:
        return self._intent.get((db, owner), Intent.NEW)

    def note_handle(self, db: FileKey, owner: Owner, handle: int) -> None:
        if handle < 0:
            return
        key = (db, owner)
        handles = self._handles.get(key)
        if handles is None:
            handles = self._handles[key] = set()
        if handle not in handles:
            handles.add(handle)
            self._keys.setdefault(handle, set()).add(key)

    def learn(self, db: FileKey, owner: Owner, intent: Intent) -> None:
        """Record what the owner just did. A writer stays a writer."""
        key = (db, owner)
        if key not in self._handles:
            return  # through no known handle: nothing would ever forget it
        if self._intent.get(key) is not Intent.WRITER:
            self._intent[key] = intent

    def forget_handle(self, handle: int) -> None:
        for key in self._keys.pop(handle, ()):
            handles = self._handles.get(key)
            if handles is None:
                continue
            handles.discard(handle)
            if not handles:
                del self._handles[key]
                self._intent.pop(key, None)

    def writers(self, db: FileKey) -> list[Owner]:
        return [owner for (d, owner), intent in self._intent.items() if d == db and intent is Intent.WRITER]
