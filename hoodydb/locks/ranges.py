"""The POSIX record-lock table of one file, with the kernel's exact range semantics.

Invariants (per owner): segments are sorted, never overlap, and adjacent segments of the same
kind are merged, just as the kernel keeps them. Setting a range replaces whatever the owner held
there (convert), splitting the segments it cuts; unlocking is setting "nothing".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hoodydb.locks.types import EOF_OFFSET, LockKind, Owner


@dataclass(frozen=True, slots=True)
class Segment:
    start: int
    end: int  # exclusive
    kind: LockKind  # READ or WRITE

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end


def kinds_conflict(a: LockKind, b: LockKind) -> bool:
    return a is LockKind.WRITE or b is LockKind.WRITE


class RangeTable:
    """All owners' locks on one file."""

    __slots__ = ("_held", "pids")

    def __init__(self) -> None:
        self._held: dict[Owner, list[Segment]] = {}
        self.pids: dict[Owner, int] = {}  # the pid that last locked, for F_GETLK and `hoodydb locks`

    def __bool__(self) -> bool:
        return bool(self._held)

    def owners(self) -> Iterator[Owner]:
        return iter(self._held)

    def segments(self, owner: Owner) -> list[Segment]:
        return list(self._held.get(owner, ()))

    def conflicts(self, owner: Owner, start: int, end: int, kind: LockKind) -> list[tuple[Owner, Segment]]:
        """Other owners' segments that keep `owner` from taking `kind` on [start, end)."""
        found = []
        for other, segs in self._held.items():
            if other == owner:
                continue
            for seg in segs:
                if seg.overlaps(start, end) and kinds_conflict(seg.kind, kind):
                    found.append((other, seg))
        return found

    def holds(
        self, owner: Owner, start: int = 0, end: int = EOF_OFFSET, kind: LockKind | None = None
    ) -> bool:
        """Does `owner` hold any lock (of `kind`, if given) overlapping [start, end)?"""
        return any(
            seg.overlaps(start, end) and (kind is None or seg.kind is kind)
            for seg in self._held.get(owner, ())
        )

    def set(self, owner: Owner, start: int, end: int, kind: LockKind, pid: int | None = None) -> None:
        """Apply F_SETLK for `owner`: lock (READ/WRITE) or unlock [start, end). Never fails."""
        if start >= end:
            return
        kept: list[Segment] = []
        for seg in self._held.get(owner, ()):
            if not seg.overlaps(start, end):
                kept.append(seg)
                continue
            if seg.start < start:
                kept.append(Segment(seg.start, start, seg.kind))
            if seg.end > end:
                kept.append(Segment(end, seg.end, seg.kind))
        if kind is not LockKind.UNLOCK:
            kept.append(Segment(start, end, kind))
        if not kept:
            self._held.pop(owner, None)
            self.pids.pop(owner, None)
            return
        self._held[owner] = _merged(sorted(kept, key=lambda s: s.start))
        if pid is not None:
            self.pids[owner] = pid

    def drop(self, owner: Owner) -> bool:
        """Release everything `owner` holds (close/FLUSH). Returns whether it held anything."""
        self.pids.pop(owner, None)
        return self._held.pop(owner, None) is not None


def _merged(segs: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for seg in segs:
        if out and out[-1].end == seg.start and out[-1].kind is seg.kind:
            out[-1] = Segment(out[-1].start, seg.end, seg.kind)
        else:
            out.append(seg)
    return out
