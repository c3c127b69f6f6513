"""RangeTable: the kernel's POSIX record-lock semantics, checked by hand and against a byte model."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from hoodydb.locks.ranges import RangeTable, Segment, kinds_conflict
from hoodydb.locks.types import EOF_OFFSET, LockKind

R, W, U = LockKind.READ, LockKind.WRITE, LockKind.UNLOCK


def test_adjacent_and_overlapping_locks_of_one_kind_merge() -> None:
    t = RangeTable()
    t.set(1, 0, 5, R, pid=10)
    t.set(1, 5, 10, R)
    assert t.segments(1) == [Segment(0, 10, R)]
    t.set(1, 8, 20, R)
    assert t.segments(1) == [Segment(0, 20, R)]
    t.set(1, 30, 40, R)
    t.set(1, 20, 30, R)  # fills the gap: one segment again
    assert t.segments(1) == [Segment(0, 40, R)]


def test_adjacent_locks_of_different_kinds_stay_apart() -> None:
    t = RangeTable()
    t.set(1, 0, 5, R)
    t.set(1, 5, 10, W)
    assert t.segments(1) == [Segment(0, 5, R), Segment(5, 10, W)]


def test_unlocking_the_middle_splits_a_segment() -> None:
    t = RangeTable()
    t.set(1, 0, 10, W)
    t.set(1, 3, 6, U)
    assert t.segments(1) == [Segment(0, 3, W), Segment(6, 10, W)]
    assert not t.holds(1, 3, 6)
    assert t.holds(1, 2, 4)


def test_converting_part_of_a_segment_splits_it_in_three() -> None:
    t = RangeTable()
    t.set(1, 0, 10, R)
    t.set(1, 4, 6, W)
    assert t.segments(1) == [Segment(0, 4, R), Segment(4, 6, W), Segment(6, 10, R)]
    t.set(1, 4, 6, R)  # downgrade back: everything merges again
    assert t.segments(1) == [Segment(0, 10, R)]


def test_converting_a_whole_range_replaces_it() -> None:
    t = RangeTable()
    t.set(1, 100, 102, R)
    t.set(1, 100, 102, W)
    assert t.segments(1) == [Segment(100, 102, W)]
    t.set(1, 90, 110, R)  # a larger range swallows the old one
    assert t.segments(1) == [Segment(90, 110, R)]


def test_whole_file_unlock_drops_the_owner_and_its_pid() -> None:
    t = RangeTable()
    t.set(1, 0, 1, R, pid=10)
    t.set(1, 1 << 30, (1 << 30) + 512, W, pid=11)
    t.set(2, 0, 1, R, pid=20)
    assert t.pids == {1: 11, 2: 20}
    t.set(1, 0, EOF_OFFSET, U)
    assert t.segments(1) == []
    assert sorted(t.owners()) == [2]
    assert t.pids == {2: 20}
    t.set(2, 0, EOF_OFFSET, U)
    assert not t
    assert t.pids == {}


def test_lock_to_eof_and_partial_unlock_of_it() -> None:
    t = RangeTable()
    t.set(1, 10, EOF_OFFSET, W)
    t.set(1, 20, 30, U)
    assert t.segments(1) == [Segment(10, 20, W), Segment(30, EOF_OFFSET, W)]
    assert t.conflicts(2, 1 << 40, (1 << 40) + 1, R) == [(1, Segment(30, EOF_OFFSET, W))]


def test_empty_ranges_are_ignored() -> None:
    t = RangeTable()
    t.set(1, 5, 5, W)
    t.set(1, 6, 5, W)
    assert not t
    t.set(1, 0, 10, W)
    t.set(1, 5, 5, U)
    assert t.segments(1) == [Segment(0, 10, W)]


def test_unlocking_what_is_not_held_is_harmless() -> None:
    t = RangeTable()
    t.set(1, 0, 10, U)
    assert not t
    t.set(1, 0, 10, R)
    t.set(1, 20, 30, U)
    assert t.segments(1) == [Segment(0, 10, R)]


def test_drop_releases_every_lock_of_one_owner() -> None:
    t = RangeTable()
    t.set(1, 0, 10, R, pid=10)
    t.set(1, 20, 30, W)
    t.set(2, 0, 10, R, pid=20)
    assert t.drop(1) is True
    assert t.drop(1) is False
    assert t.segments(1) == []
    assert sorted(t.owners()) == [2]
    assert t.pids == {2: 20}


def test_pid_is_that_of_the_last_lock() -> None:
    t = RangeTable()
    t.set(1, 0, 1, R, pid=10)
    t.set(1, 5, 6, R, pid=11)
    t.set(1, 5, 6, U)  # an unlock does not change it
    assert t.pids == {1: 11}


def test_conflicts_follow_read_write_compatibility() -> None:
    assert not kinds_conflict(R, R)
    assert kinds_conflict(R, W)
    assert kinds_conflict(W, R)
    assert kinds_conflict(W, W)
    t = RangeTable()
    t.set(1, 0, 10, R)
    t.set(2, 5, 15, R)
    assert t.conflicts(3, 0, 20, R) == []
    assert sorted(o for o, _ in t.conflicts(3, 0, 20, W)) == [1, 2]
    assert t.conflicts(3, 10, 20, W) == [(2, Segment(5, 15, R))]
    assert t.conflicts(3, 15, 20, W) == []  # [5, 15) ends where the request begins
    # An owner never conflicts with itself: it converts instead.
    assert t.conflicts(1, 0, 5, W) == []


def test_holds_with_and_without_kind() -> None:
    t = RangeTable()
    t.set(1, 0, 10, R)
    t.set(1, 10, 20, W)
    assert t.holds(1)
    assert t.holds(1, 5, 6, R)
    assert not t.holds(1, 5, 6, W)
    assert t.holds(1, 9, 11, W)
    assert not t.holds(1, 20, 30)
    assert not t.holds(2)


# -- property test against a byte model ------------------------------------------------------------

SPACE = 8  # bytes 0..7 explicitly, plus cell SPACE standing for [SPACE, EOF)
OWNERS = (1, 2, 3)
NONE, READ, WRITE = 0, 1, 2
CODE = {R: READ, W: WRITE, U: NONE}


def _end(cell_end: int) -> int:
    return EOF_OFFSET if cell_end > SPACE else cell_end


@st.composite
def ranges(draw: st.DrawFn) -> tuple[int, int]:
    """[start, end) in model cells: end == SPACE + 1 means "to EOF"."""
    start = draw(st.integers(0, SPACE))
    end = draw(st.integers(start + 1, SPACE + 1))
    if start == SPACE:
        end = SPACE + 1  # the tail cell is only ever named as a whole
    return start, end


Op = tuple[str, int, tuple[int, int], LockKind]
ops = st.tuples(
    st.sampled_from(["set", "set", "set", "drop"]),
    st.sampled_from(OWNERS),
    ranges(),
    st.sampled_from([R, W, U]),
)


def _check(t: RangeTable, model: dict[int, list[int]]) -> None:
    for owner in OWNERS:
        segs = t.segments(owner)
        # Sorted, non-overlapping, merged, never empty, only READ/WRITE.
        for a, b in itertools.pairwise(segs):
            assert a.end <= b.start
            assert not (a.end == b.start and a.kind is b.kind)
        cells = [NONE] * (SPACE + 1)
        for seg in segs:
            assert seg.start < seg.end
            assert seg.kind in (R, W)
            cell_end = SPACE + 1 if seg.end == EOF_OFFSET else seg.end
            assert seg.end == EOF_OFFSET or seg.end <= SPACE
            for i in range(seg.start, cell_end):
                cells[i] = CODE[seg.kind]
        assert cells == model[owner]
        assert (owner in t.pids) == any(model[owner])
    assert sorted(t.owners()) == [o for o in OWNERS if any(model[o])]
    assert bool(t) == any(any(m) for m in model.values())
    # Every query range: holds() and conflicts() agree with the model.
    for start in range(SPACE + 1):
        for cell_end in range(start + 1, SPACE + 2):
            if start == SPACE and cell_end != SPACE + 1:
                continue
            end = _end(cell_end)
            span = range(start, min(cell_end, SPACE + 1))
            for owner in OWNERS:
                mine = [model[owner][i] for i in span]
                assert t.holds(owner, start, end) == any(mine)
                assert t.holds(owner, start, end, R) == (READ in mine)
                assert t.holds(owner, start, end, W) == (WRITE in mine)
                for kind in (R, W):
                    expected = {
                        other
                        for other in OWNERS
                        if other != owner
                        and any(
                            model[other][i] == WRITE or (model[other][i] == READ and kind is W) for i in span
                        )
                    }
                    found = t.conflicts(owner, start, end, kind)
                    assert {o for o, _ in found} == expected
                    assert t.blocks(owner, start, end, kind) == bool(expected)
                    first = t.first_conflict(owner, start, end, kind)
                    assert (first is None) == (not expected) and (first is None or first in found)
                    for other, seg in found:
                        assert seg in t.segments(other)
                        assert seg.overlaps(start, end)


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, max_size=25))
def test_table_matches_a_byte_model(operations: list[Op]) -> None:
    t = RangeTable()
    model = {owner: [NONE] * (SPACE + 1) for owner in OWNERS}
    for pid, (op, owner, (start, cell_end), kind) in enumerate(operations):
        if op == "drop":
            assert t.drop(owner) == any(model[owner])
            model[owner] = [NONE] * (SPACE + 1)
        else:
            t.set(owner, start, _end(cell_end), kind, pid=pid)
            for i in range(start, min(cell_end, SPACE + 1)):
                model[owner][i] = CODE[kind]
        _check(t, model)
