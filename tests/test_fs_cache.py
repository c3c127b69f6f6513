"""Whether the kernel may keep a file's cached pages at open: `Passthrough.keeps_cache`, no FUSE.

The mount turns off the kernel's own check (a changed mtime drops the cache), because every write
through the mount changes the mtime. These tests pin the check that replaces it: a file that
nobody has open may have been changed behind the mount, and then its cache must go.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hoodydb.fs.operations import CLOSED_FILES_REMEMBERED, Passthrough
from hoodydb.locks.manager import LockManager


@pytest.fixture
def ops(tmp_path: Path) -> Passthrough:
    (tmp_path / "x.db").write_bytes(b"a" * 8192)
    return Passthrough(str(tmp_path), LockManager())


def _reopen(ops: Passthrough, name: str = "/x.db") -> bool:
    fh = ops.open(name, os.O_RDWR)
    keep = ops.keeps_cache(fh)
    ops.release(None, fh)
    return keep


def test_cache_is_kept_while_open_and_across_opens_of_an_unchanged_file(ops: Passthrough) -> None:
    first = ops.open("/x.db", os.O_RDWR)
    assert not ops.keeps_cache(first), "a file the mount has not seen close may be anything"
    second = ops.open("/x.db", os.O_RDONLY)
    assert ops.keeps_cache(second), "open through the mount: the kernel saw every change"
    os.pwrite(first, b"b" * 100, 0)  # a write through the mount (the kernel's cache has it)
    ops.release(None, second)
    ops.release(None, first)
    assert _reopen(ops)
    assert _reopen(ops)


def test_change_behind_the_mount_between_opens_drops_the_cache(ops: Passthrough, tmp_path: Path) -> None:
    assert not _reopen(ops)
    assert _reopen(ops)
    with open(tmp_path / "x.db", "r+b") as f:  # same size: only the times tell
        f.write(b"z")
    assert not _reopen(ops)
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


def test_without_kernel_cache_no_open_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "x.db").write_bytes(b"a")
    ops = Passthrough(str(tmp_path), LockManager(), kernel_cache=False)
    first = ops.open("/x.db", os.O_RDWR)
    assert not _reopen(ops)
    ops.release(None, first)
    assert not _reopen(ops)


def test_memory_of_closed_files_is_bounded(ops: Passthrough, tmp_path: Path) -> None:
    for i in range(CLOSED_FILES_REMEMBERED + 10):
        (tmp_path / f"f{i}").write_bytes(b"")
        _reopen(ops, f"/f{i}")
    assert len(ops.closed_as) == CLOSED_FILES_REMEMBERED
    assert not _reopen(ops, "/f0"), "forgotten: must be taken as changed"
    assert _reopen(ops, f"/f{CLOSED_FILES_REMEMBERED + 9}")
