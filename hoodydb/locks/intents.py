"""What each lock owner has shown it does with each database: the knowledge policy `beside` needs.

When a transaction takes its snapshot the daemon cannot know whether it will write, and a
transaction that writes needs a snapshot taken after the previous commit. So writers take turns at
their snapshot and readers run beside; which is which is learned from what each owner (process)
did before on that database, for as long as it keeps the database open.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hoodydb.locks.types import Owner


class Intent(enum.Enum):
    NEW = "new"  # nothing known yet
    READER = "reader"  # a long transaction of it read only (its window passed the turn on), and
    # it has not written since: its transactions run beside
    WRITER = "writer"  # it has taken RESERVED or the WAL's WRITE lock


class Aside(enum.Enum):
    """Why a transaction runs beside the turn (`hoodydb locks` shows it)."""

    READ_ONLY = "read-only open"  # it cannot write
    READER = "reader"  # its owner has shown long reads and has not written since
    SPECULATIVE = "predicted reader"  # its owner's last transaction only read (`speculative_reads`)
    WINDOW_PASSED = "window passed"  # it held the turn for a window without asking to write
    TIMED_OUT = "turn timed out"  # its read slot waited the lock timeout: it reads on, a write is refused
    WRITER_ASLEEP = "writer asleep"  # the turn's writer sleeps in its open transaction (reader_patience)
    CYCLE = "holder waits for it"  # waiting would close a cycle: the turn's holder waits for its locks
    AFTER_WRITE = "read after its write"  # another connection of its process wrote from beside


@dataclass(slots=True)
class Beside:
    """A transaction running beside the turn."""

    pid: int
    since: float
    learn: bool  # its end without a write makes its owner a reader (not so for a schema read)
    why: Aside = Aside.READER


class Intents:
    """What each owner has shown it does with one database, kept while the owner has a handle of
    it open.

    An owner is one process (the kernel's lock owner); the handles it locked through are its
    connections' files. When the last of them is closed, what was learned is forgotten, so a new
    process that gets a freed owner id starts as NEW, and the table stays as small as the set
    of open connections.
    """

    __slots__ = ("_handles", "_intent", "_last_read", "_owners")

    def __init__(self) -> None:
        self._intent: dict[Owner, Intent] = {}
        self._handles: dict[Owner, set[int]] = {}
        self._owners: dict[int, set[Owner]] = {}  # handle -> owners that locked through it
        self._last_read: set[Owner] = set()  # owners whose last transaction only read

    def __len__(self) -> int:
        return len(self._handles)

    def of(self, owner: Owner) -> Intent:
        return self._intent.get(owner, Intent.NEW)

    def note_handle(self, owner: Owner, handle: int) -> None:
        if handle < 0:
            return
        handles = self._handles.get(owner)
        if handles is None:
            handles = self._handles[owner] = set()
        if handle not in handles:
            handles.add(handle)
            self._owners.setdefault(handle, set()).add(owner)

    def learn(self, owner: Owner, intent: Intent) -> None:
        """Record what the owner just did. A writer stays a writer."""
        if owner not in self._handles:
            return  # through no known handle: nothing would ever forget it
        if intent is Intent.WRITER:
            self._last_read.discard(owner)
        if self._intent.get(owner) is not Intent.WRITER:
            self._intent[owner] = intent

    def ended(self, owner: Owner, wrote: bool) -> None:
        """A transaction of the owner ended: the prediction for its next one."""
        if owner not in self._handles:
            return
        if wrote:
            self._last_read.discard(owner)
        else:
            self._last_read.add(owner)

    def predicts_read(self, owner: Owner) -> bool:
        """Its last transaction only read, so its next one most likely will too. A guess: the turn
        it gets is a proper one all the same (a wrong guess costs the writers it went ahead of)."""
        return owner in self._last_read

    def forget_handle(self, handle: int) -> None:
        for owner in self._owners.pop(handle, ()):
            handles = self._handles.get(owner)
            if handles is None:
                continue
            handles.discard(handle)
            if not handles:
                del self._handles[owner]
                self._intent.pop(owner, None)
                self._last_read.discard(owner)

    def writers(self) -> list[Owner]:
        return [owner for owner, intent in self._intent.items() if intent is Intent.WRITER]
