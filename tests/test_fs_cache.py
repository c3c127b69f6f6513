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
from hoodydb.fs.cache import CacheFreshness, CacheMode
from hoodydb.fs.operations import Passthrough
from hoodydb.locks import LockManager

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


def _stat(ctime_ns: int, size: int = 100) -> os.stat_result:
    return os.stat_result(
        (0o100644, 1, 1, 1, 0, 0, size, 0, 0, 0), {"st_mtime_ns": ctime_ns, "st_ctime_ns": ctime_ns}
    )


def test_timestamps_in_whole_seconds_are_trusted_only_seconds_later() -> None:
    """vfat, some NFS servers: a restore in the same second as our last write looks identical."""
    now = 1_000 * 10**9
    freshness = CacheFreshness(clock=lambda: now)
    for age, trusted in [(10**8, False), (2 * 10**9, False), (4 * 10**9, True)]:
        st = _stat(now - age if trusted else (now - age) // 10**9 * 10**9)
        freshness.flushed(7, st)
        freshness.released(7, (1, 1), CacheMode(keep=True), st, last=True)
        assert freshness.opened((1, 1), st, already_open=0, mapped=False).keep is trusted, age
    fine = _stat(now - 10**8 + 1)  # not whole seconds: a few ticks are enough
    freshness.flushed(7, fine)
    freshness.released(7, (1, 1), CacheMode(keep=True), fine, last=True)
    assert freshness.opened((1, 1), fine, already_open=0, mapped=False).keep


def test_without_page_cache_while_any_open_handle_has_none(ops: Passthrough, tmp_path: Path) -> None:
    """The snapshot link goes away while a connection through it is open: that connection's
    direct writes would not drop a new handle's pages on every kernel."""
    os.link(tmp_path / "x.db", tmp_path / "snap.db")
    held = ops.open("/snap.db", os.O_RDWR)
    assert ops.cache_mode(held).direct
    os.unlink(tmp_path / "snap.db")
    fh = ops.open("/x.db", os.O_RDWR)
    assert ops.cache_mode(fh).direct, "a handle without page cache is still open"
    _close(ops, fh)
    _close(ops, held)
    fh = ops.open("/x.db", os.O_RDWR)
    assert not ops.cache_mode(fh).direct
    _close(ops, fh)


def test_a_shm_open_under_two_names_at_once_is_refused(ops: Passthrough, tmp_path: Path) -> None:
    """A -shm must be mapped, so it cannot go without the page cache; two names would be two
    kernel inodes, two page caches, two WAL indexes."""
    (tmp_path / "x.db-shm").write_bytes(b"\0" * 32768)
    os.link(tmp_path / "x.db-shm", tmp_path / "copy.db-shm")
    first = ops.open("/x.db-shm", os.O_RDWR)
    again = ops.open("/x.db-shm", os.O_RDWR)  # the same name: one inode, fine
    with pytest.raises(OSError) as refused:
        ops.open("/copy.db-shm", os.O_RDWR)
    assert refused.value.errno == errno.EBUSY
    assert ops.open_count[(os.fstat(first).st_dev, os.fstat(first).st_ino)] == 2
    _close(ops, again)
    _close(ops, first)
    fh = ops.open("/copy.db-shm", os.O_RDWR)  # nobody has the other name open now
    _close(ops, fh)


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
        freshness.released(key, (0, key), CacheMode(keep=True), st, last=True)
    assert list(freshness.closed_as) == [(0, 2), (0, 3), (0, 4)]
    assert not freshness.opened((0, 0), st, already_open=0, mapped=False).keep, "forgotten: taken as changed"
    assert freshness.opened((0, 4), st, already_open=0, mapped=False).keep
