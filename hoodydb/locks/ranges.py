"""The POSIX record-lock table of one file, with the kernel's exact range semantics.

Invariants (per owner): segments are sorted, never overlap, and adjacent segments of the same
kind are merged, just as the kernel keeps them. Setting a range replaces whatever the owner held
there (convert), splitting the segments it cuts; unlocking is setting "nothing".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from hoodydb.locks.types import EOF_OFFSET, LockKind, Owner


class Segment(NamedTuple):  # a tuple: built on every lock call, where a dataclass costs 3x
    start: int
    end: int  # exclusive
    kind: LockKind  # READ or WRITE

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end


def kinds_conflict(a: LockKind, b: LockKind) -> bool:
    return a is LockKind.WRITE or b is LockKind.WRITE


class RangeTable:
    """All owners' locks on one file.

    Besides each owner's own segments, an index from (start, end, kind) to the owners holding
    exactly that segment: SQLite uses a handful of distinct ranges however many connections it
    has, so a conflict check walks those few ranges instead of every owner.
    Invariant: (s, e, w) -> {o, ...} in `_index` exactly when `_held[o]` has Segment(s, e, k)
    with w == (k is WRITE). (A bool, not the kind: hashing an Enum member runs Python code.)
    """

    __slots__ = ("_held", "_index", "pids")

    def __init__(self) -> None:
        self._held: dict[Owner, list[Segment]] = {}
        self._index: dict[tuple[int, int, bool], set[Owner]] = {}
        self.pids: dict[Owner, int] = {}  # the pid that last locked, for F_GETLK and `hoodydb locks`

    def __bool__(self) -> bool:
        return bool(self._held)

    def owners(self) -> Iterator[Owner]:
        return iter(self._held)

    def segments(self, owner: Owner) -> list[Segment]:
        return list(self._held.get(owner, ()))

    def conflicts(self, owner: Owner, start: int, end: int, kind: LockKind) -> list[tuple[Owner, Segment]]:
        """Other owners' segments that keep `owner` from taking `kind` on [start, end)."""
        found: list[tuple[Owner, Segment]] = []
        writing = kind is LockKind.WRITE
        for (s, e, w), holders in self._index.items():
            if s < end and start < e and (writing or w):
                held = LockKind.WRITE if w else LockKind.READ
                found.extend((other, Segment(s, e, held)) for other in holders if other != owner)
        return found

    def first_conflict(
        self, owner: Owner, start: int, end: int, kind: LockKind
    ) -> tuple[Owner, Segment] | None:
        """One of `conflicts`, found without building the others: F_GETLK asks for one, and the
        DMS byte that every WAL client probes with a write lock is read-held by every connection."""
        writing = kind is LockKind.WRITE
        for (s, e, w), holders in self._index.items():
            if s < end and start < e and (writing or w):
                for other in holders:
                    if other != owner:
                        return other, Segment(s, e, LockKind.WRITE if w else LockKind.READ)
        return None

    def blocks(self, owner: Owner, start: int, end: int, kind: LockKind) -> bool:
        """Would `conflicts` find anything? (Without building its answer: asked on every lock.)"""
        writing = kind is LockKind.WRITE
        for (s, e, w), holders in self._index.items():
            if s < end and start < e and (writing or w) and (len(holders) > 1 or owner not in holders):
                return True
        return False

    def held_by_anyone(self, start: int, end: int) -> bool:
        """Does any owner hold a lock overlapping [start, end)?"""
        return any(s < end and start < e for (s, e, _) in self._index)

    def holds(
        self, owner: Owner, start: int = 0, end: int = EOF_OFFSET, kind: LockKind | None = None
    ) -> bool:
        """Does `owner` hold any lock (of `kind`, if given) overlapping [start, end)?"""
        for seg in self._held.get(owner, ()):
            if seg.start < end and start < seg.end and (kind is None or seg.kind is kind):
                return True
        return False

    def set(self, owner: Owner, start: int, end: int, kind: LockKind, pid: int | None = None) -> None:
        """Apply F_SETLK for `owner`: lock (READ/WRITE) or unlock [start, end). Never fails."""
        if start >= end:
            return
        old = self._held.get(owner, ())
        if self._set_quickly(owner, old, start, end, kind, pid):
            return
        kept: list[Segment] = []
        for seg in old:
            if not seg.overlaps(start, end):
                kept.append(seg)
                continue
            if seg.start < start:
                kept.append(Segment(seg.start, start, seg.kind))
            if seg.end > end:
                kept.append(Segment(end, seg.end, seg.kind))
        if kind is not LockKind.UNLOCK:
            kept.append(Segment(start, end, kind))
        self._unindex(owner, old)
        if not kept:
            self._held.pop(owner, None)
            self.pids.pop(owner, None)
            return
        new = _merged(sorted(kept, key=lambda s: s.start))
        self._held[owner] = new
        for seg in new:
            self._index.setdefault((seg.start, seg.end, seg.kind is LockKind.WRITE), set()).add(owner)
        if pid is not None:
            self.pids[owner] = pid

    def _set_quickly(
        self,
        owner: Owner,
        old: list[Segment] | tuple[()],
        start: int,
        end: int,
        kind: LockKind,
        pid: int | None,
    ) -> bool:
        """The shapes of nearly every SQLite lock call, without rebuilding the owner's list:
        a lock that neither overlaps nor touches what the owner holds, and the unlock of exactly
        one held segment. Returns False for anything else."""
        if kind is LockKind.UNLOCK:
            for i, seg in enumerate(old):
                if seg.start == start and seg.end == end:
                    assert isinstance(old, list)
                    del old[i]
                    self._unindex(owner, (seg,))
                    if not old:
                        del self._held[owner]
                        self.pids.pop(owner, None)
                    return True
            return False
        for seg in old:
            if seg.start <= end and start <= seg.end:  # overlapping or adjacent
                return False
        segment = Segment(start, end, kind)
        if old:
            assert isinstance(old, list)
            old.append(segment)
            old.sort()
        else:
            self._held[owner] = [segment]
        self._index.setdefault((start, end, kind is LockKind.WRITE), set()).add(owner)
        if pid is not None:
            self.pids[owner] = pid
        return True

    def drop(self, owner: Owner) -> bool:
        """Release everything `owner` holds (close/FLUSH). Returns whether it held anything."""
        self.pids.pop(owner, None)
        old = self._held.pop(owner, None)
        if old is None:
            return False
        self._unindex(owner, old)
        return True

    def _unindex(self, owner: Owner, segs: Iterable[Segment]) -> None:
        for seg in segs:
            key = (seg.start, seg.end, seg.kind is LockKind.WRITE)
            holders = self._index[key]
            holders.discard(owner)
            if not holders:
                del self._index[key]


def _merged(segs: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for seg in segs:
        if out and out[-1].end == seg.start and out[-1].kind is seg.kind:
            out[-1] = Segment(out[-1].start, seg.end, seg.kind)
        else:
            out.append(seg)
    return out
