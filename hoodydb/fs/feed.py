"""The commit feed: per database, a sequence number and a bounded history of its commits.

`commits.py` sees a commit at the file-system edge and calls `publish`; subscribers (the control
socket's `watch` request, which `hoodydb watch` and the API's SSE route use) read from here.

Memory is bounded on both sides: each database keeps its last `HISTORY` events in a ring, and a
subscriber is only a cursor (database -> last sequence seen) plus an Event to wake it. A
subscriber that falls behind the ring is told how many it missed instead of being buffered for.
Only subscribers whose glob matches the committing database are woken, so idle subscribers (or
those watching other databases) cost no CPU between commits.

Sequence numbers never go back across restarts: `SequenceStore` persists, per database, a
ceiling `BLOCK` numbers ahead of the last one handed out, written (and fsynced) only when a
database crosses it; a clean shutdown writes the exact last numbers. After a crash the next
numbers start at the ceiling, so a gap of up to BLOCK is possible, a step back is not, and the
writers' path pays one small file write per BLOCK commits instead of one per commit.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HISTORY = 1024  # events kept per database for subscribers that resume or fall behind
# Databases whose history is kept: the most recently committed ones. Programs that make many
# short-lived databases (a cache's temporary files) must not grow the daemon with each.
MAX_HISTORIES = 256
BLOCK = 1000  # sequence numbers reserved per persisted write
LINGER = 0.02  # least time between two batches to one subscriber
SEQUENCE_FILE = "feed-sequence.json"  # under the backing directory's state dir (.hoodydb/)


@dataclass(frozen=True, slots=True)
class Commit:
    """One commit of one database, as subscribers see it."""

    db: str  # its path inside the mount, without the leading slash ("team/app.db")
    seq: int
    time: float  # seconds since the epoch, when the commit was written
    pid: int  # the writing process (thread group), as the kernel gave it to the mount
    command: str  # its command line, read from /proc when the commit was seen
    pages: int  # WAL frames, or database page writes with a rollback journal
    journal: str  # "wal" or "rollback": how the commit was seen
    token: str | None = None  # the API token's name, for a commit by `serve` on a token's behalf
    order: int = 0  # feed-wide publication order, to merge databases (not sent)

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "commit",
            "db": self.db,
            "seq": self.seq,
            "time": self.time,
            "pid": self.pid,
            "command": self.command,
            "pages": self.pages,
            "journal": self.journal,
            "token": self.token,
        }


@dataclass(frozen=True, slots=True)
class Missed:
    """Commits a subscriber can no longer get: numbers `first`..`last` of `db` left the ring."""

    db: str
    first: int
    last: int

    def as_dict(self) -> dict[str, Any]:
        return {"type": "missed", "db": self.db, "first": self.first, "last": self.last,
                "count": self.last - self.first + 1}  # fmt: skip


class SequenceStore:
    """The persisted ceilings (database -> a number at least as high as any handed out)."""

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / SEQUENCE_FILE if state_dir is not None else None
        self.ceilings: dict[str, int] = {}
        if self.path is not None:
            try:
                loaded = json.loads(self.path.read_text())
                self.ceilings = {str(k): int(v) for k, v in loaded.items()}
            except FileNotFoundError:
                pass
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("commit feed: cannot read %s (%s): sequence numbers restart at 0", self.path, exc)

    def save(self, values: dict[str, int]) -> None:
        """Write `values` atomically and durably (temporary file, fsync, rename)."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as f:
                json.dump(values, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("commit feed: cannot write %s: %s", self.path, exc)


class _Database:
    __slots__ = ("history", "seq")

    def __init__(self, seq: int, history: int) -> None:
        self.seq = seq
        self.history: collections.deque[Commit] = collections.deque(maxlen=history)


@dataclass(eq=False)
class Subscription:
    """A cursor over the feed: the last sequence number delivered, per database."""

    glob: str
    cursor: dict[str, int]
    default_since: int | None  # where a database not in the cursor starts (None: at its first commit)
    positions: dict[str, int] = field(default_factory=dict)  # matching databases' numbers at the start
    wake: threading.Event = field(default_factory=threading.Event)

    def matches(self, db: str) -> bool:
        return fnmatch.fnmatchcase(db, self.glob)


class CommitFeed:
    def __init__(
        self,
        state_dir: Path | None,
        *,
        root: Path | None = None,
        history: int = HISTORY,
        block: int = BLOCK,
        max_histories: int = MAX_HISTORIES,
    ) -> None:
        self._root = root  # the backing directory: at close, names whose file is gone are dropped
        self._mu = threading.Lock()
        self._store = SequenceStore(state_dir)
        self._block = block
        self._history = history
        self._ceilings = dict(self._store.ceilings)
        self._max_histories = max_histories
        self._dbs = {name: _Database(seq, history) for name, seq in self._ceilings.items()}
        # Databases with a history, least recently committed first.
        self._kept: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._subscribers: list[Subscription] = []
        self._published = 0
        self._closed = False

    # -- writers' side ---------------------------------------------------------------------------

    def publish(
        self,
        db: str,
        *,
        pid: int,
        command: str,
        pages: int,
        journal: str,
        at: float,
        token: str | None = None,
    ) -> Commit:
        """Number a commit of `db` and wake the subscribers that watch it."""
        with self._mu:
            state = self._dbs.get(db)
            if state is None:
                state = self._dbs[db] = _Database(0, self._history)
            state.seq += 1
            self._published += 1
            commit = Commit(db, state.seq, at, pid, command, pages, journal, token, self._published)
            state.history.append(commit)
            self._kept[db] = None
            self._kept.move_to_end(db)
            if len(self._kept) > self._max_histories:
                # The oldest history goes (its number stays): a subscriber behind it gets `missed`.
                self._dbs[self._kept.popitem(last=False)[0]].history.clear()
            if state.seq > self._ceilings.get(db, 0):
                # Rare (once per block): reserve the next block before the number is seen.
                self._ceilings[db] = state.seq + self._block
                self._store.save(self._ceilings)
            for sub in self._subscribers:
                if sub.matches(db):
                    sub.wake.set()
        return commit

    def close(self) -> None:
        """Persist the exact last numbers (a restart continues without a gap); wake everyone."""
        with self._mu:
            self._closed = True
            # A database whose file is gone is forgotten: a new one under its name starts at 1.
            gone = [n for n in self._dbs if self._root is not None and not (self._root / n).exists()]
            self._store.save({name: db.seq for name, db in self._dbs.items() if name not in gone})
            for sub in self._subscribers:
                sub.wake.set()

    # -- subscribers' side -----------------------------------------------------------------------

    def positions(self, glob: str) -> dict[str, int]:
        """The last sequence number of every database the glob matches."""
        with self._mu:
            return {name: db.seq for name, db in self._dbs.items() if fnmatch.fnmatchcase(name, glob)}

    def subscribe(self, glob: str, since: int | dict[str, int] | None = None) -> Subscription:
        """A cursor from `since`: None = from now on; a number = after that sequence number in
        every matching database; a mapping = per database (a database it does not name starts
        from its first kept commit, so that one created while the client was away is not lost)."""
        with self._mu:
            positions = {name: db.seq for name, db in self._dbs.items() if fnmatch.fnmatchcase(name, glob)}
            if since is None:
                cursor = dict(positions)
                default: int | None = 0  # a database that appears later: all of it is new
            elif isinstance(since, int):
                cursor = {}
                default = since
            else:
                cursor = dict(since)
                default = None
            sub = Subscription(glob, cursor, default, positions)
            self._subscribers.append(sub)
            sub.wake.set()  # look once: a resumed cursor may already be behind
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._mu:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def take(self, sub: Subscription, timeout: float) -> list[Commit | Missed] | None:
        """What `sub` has not seen yet, waiting up to `timeout` for something; [] on timeout,
        None once the feed is closed."""
        deadline = time.monotonic() + timeout
        while True:
            if not sub.wake.wait(max(0.0, deadline - time.monotonic())):
                return []
            batch = self._collect(sub)
            if batch is None or batch:
                return batch

    def _collect(self, sub: Subscription) -> list[Commit | Missed] | None:
        with self._mu:
            sub.wake.clear()
            if self._closed:
                return None
            missed: list[Commit | Missed] = []
            out: list[Commit] = []
            for name, db in self._dbs.items():
                if not sub.matches(name):
                    continue
                # A database the cursor does not know (created since, or not named on resume)
                # starts at its first kept commit, with nothing reported missed before it.
                known = name in sub.cursor or sub.default_since is not None
                last = sub.cursor.get(name, sub.default_since or 0)
                if db.seq <= last:
                    continue
                oldest = db.history[0].seq if db.history else db.seq + 1
                if known and last + 1 < oldest:
                    missed.append(Missed(name, last + 1, oldest - 1))
                out.extend(c for c in db.history if c.seq > last)
                sub.cursor[name] = db.seq
            out.sort(key=lambda c: c.order)
            return [*missed, *out]

    def events(
        self, sub: Subscription, heartbeat: float, linger: float = LINGER
    ) -> Iterator[list[Commit | Missed]]:
        """Batches of events for `sub`; an empty batch every `heartbeat` seconds of quiet. A
        batch follows the one before by `linger` seconds at least: a lone commit goes at once, a
        burst in batches, so each subscriber's thread wakes at most 1/linger times a second
        however fast the writers commit (each wake-up takes the daemon's GIL from its FUSE
        threads: 10 watchers woken at every commit cost a kept WAL writer half its tx/s)."""
        sent = 0.0
        while True:
            if (wait := sent + linger - time.monotonic()) > 0:
                time.sleep(wait)
            batch = self.take(sub, heartbeat)
            if batch is None:
                return
            if batch:
                sent = time.monotonic()
            yield batch
