"""What the kernel may do with a file's cached pages at open (cache.py), driven through
`Passthrough` on a real directory, no FUSE.

The mount turns off the kernel's own check (a changed mtime drops the cache), because every write
through the mount changes the mtime. These tests pin the check that replaces it.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from hoodydb.fs import binding
from hoodydb.fs.cache import CacheFreshness
from hoodydb.fs.operations import Passthrough
from hoodydb.locks.manager import LockManager

LATER = 10**9  # the daemon's clock a second ahead: every ctime is old enough to trust


@pytest.fixture
def ops(tmp_path: Path) -> Passthrough:
    (tmp_path / "x.db").write_bytes(b"a" * 8192)
    ops = Passthrough(str(tmp_path), LockManager())
    ops.freshness.clock = lambda: time.time_ns() + LATER
    return ops


def _close(ops: Passthrough, fh: int) -> None:
    """What the kernel sends for close(): FLUSH at once, RELEASE (asynchronously) after."""
    ops.flush(None, fh)
    ops.release(None, fh)


def _reopen(ops: Passthrough, name: str = "/x.db") -> bool:
    fh = ops.open(name, os.O_RDWR)
    keep = ops.cache_mode(fh).keep
    _close(ops, fh)
    return keep


def test_cache_is_kept_while_open_and_across_opens_of_an_unchanged_file(ops: Passthrough) -> None:
    first = ops.open("/x.db", os.O_RDWR)
    assert not ops.cache_mode(first).keep, "a file the mount has not seen close may be anything"
    second = ops.open("/x.db", os.O_RDONLY)
    assert ops.cache_mode(second).keep, "open through the mount: the kernel saw every change"
    os.pwrite(first, b"b" * 100, 0)  # a write through the mount (the kernel's cache has it)
    _close(ops, second)
    _close(ops, first)
    assert _reopen(ops)
    assert _reopen(ops)


def test_change_behind_the_mount_between_opens_drops_the_cache(ops: Passthrough, tmp_path: Path) -> None:
    assert not _reopen(ops)
    assert _reopen(ops)
    with open(tmp_path / "x.db", "r+b") as f:  # same size: only the times tell
        f.write(b"z")
    assert not _reopen(ops)
    assert _reopen(ops)


def test_change_between_close_and_release_is_not_taken_for_ours(ops: Passthrough, tmp_path: Path) -> None:
    """RELEASE comes after the client's close() has returned; a restore may run in between."""
    _reopen(ops)
    fh = ops.open("/x.db", os.O_RDWR)
    ops.flush(None, fh)
    with open(tmp_path / "x.db", "r+b") as f:
        f.write(b"z")
    ops.release(None, fh)
    assert not _reopen(ops)


def test_timestamps_too_recent_to_trust_drop_the_cache(ops: Passthrough, tmp_path: Path) -> None:
    """A coarse file-system clock can give a change right after ours the same timestamps."""
    ctime = os.stat(tmp_path / "x.db").st_ctime_ns
    ops.freshness.clock = lambda: ctime + 1_000_000  # 1 ms after the last change
    _reopen(ops)
    assert not _reopen(ops)
    ops.freshness.clock = lambda: ctime + LATER
    _reopen(ops)
    assert _reopen(ops)


def test_restored_times_do_not_hide_a_change(ops: Passthrough, tmp_path: Path) -> None:
    """cp -p and rsync put the old mtime back; the ctime still moves."""
    _reopen(ops)
    before = os.stat(tmp_path / "x.db")
    with open(tmp_path / "x.db", "r+b") as f:
        f.write(b"z")
    os.utime(tmp_path / "x.db", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert not _reopen(ops)


def test_file_replaced_by_another_drops_the_cache(ops: Passthrough, tmp_path: Path) -> None:
    _reopen(ops)
    (tmp_path / "new").write_bytes(b"a" * 8192)
    os.replace(tmp_path / "new", tmp_path / "x.db")
    assert not _reopen(ops)


def test_hard_linked_file_is_opened_without_any_page_cache(ops: Passthrough, tmp_path: Path) -> None:
    """Every name has its own kernel inode: a write through one would leave the other's pages stale."""
    _reopen(ops)
    os.link(tmp_path / "x.db", tmp_path / "y.db")
    for name in ("/x.db", "/y.db"):
        fh = ops.open(name, os.O_RDWR)
        mode = ops.cache_mode(fh)
        assert (mode.keep, mode.direct) == (False, True), name
        _close(ops, fh)
    os.link(tmp_path / "x.db", tmp_path / "x.db-shm")  # SQLite maps a -shm: no direct I/O for it
    fh = ops.open("/x.db-shm", os.O_RDWR)
    assert (ops.cache_mode(fh).keep, ops.cache_mode(fh).direct) == (False, False)
    _close(ops, fh)


def test_without_kernel_cache_no_open_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "x.db").write_bytes(b"a")
    ops = Passthrough(str(tmp_path), LockManager(), kernel_cache=False)
    ops.freshness.clock = lambda: time.time_ns() + LATER
    first = ops.open("/x.db", os.O_RDWR)
    assert not _reopen(ops)
    _close(ops, first)
    assert not _reopen(ops)


def test_a_failing_fstat_at_release_still_closes_and_forgets(
    ops: Passthrough, monkeypatch: pytest.MonkeyPatch
) -> None:
    fh = ops.open("/x.db", os.O_RDWR)
    ops.flush(None, fh)

    def broken(fd: int) -> os.stat_result:
        raise OSError(errno.EIO, "backing store gone")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fstat", broken)
        ops.release(None, fh)
    assert ops.handles == {} and ops.open_count == {}
    with pytest.raises(OSError) as closed:
        os.fstat(fh)
    assert closed.value.errno == errno.EBADF
    assert not _reopen(ops), "nothing trustworthy was recorded"


def test_create_that_cannot_give_the_file_away_leaves_nothing_open(
    ops: Passthrough, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No RELEASE follows a failed create: the handle must not stay counted as open."""
    ops._as_root = True
    monkeypatch.setattr(binding, "request_context", lambda: (1000, 1000, 42))

    def refused(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(errno.EPERM, "root_squash")

    monkeypatch.setattr(os, "fchown", refused)
    with pytest.raises(PermissionError):
        ops.create("/new.db", 0o644, os.O_RDWR)
    assert ops.handles == {} and ops.open_count == {}


def test_memory_of_closed_files_is_bounded() -> None:
    freshness = CacheFreshness(remembered=3, clock=lambda: time.time_ns() + LATER)
    st = os.stat(__file__)
    for key in range(5):
        freshness.flushed(key, st)
        freshness.released(key, (0, key), st, last=True)
    assert list(freshness.closed_as) == [(0, 2), (0, 3), (0, 4)]
    assert not freshness.opened((0, 0), st, already_open=0, mapped=False).keep, "forgotten: taken as changed"
    assert freshness.opened((0, 4), st, already_open=0, mapped=False).keep
