"""The mount works as a filesystem: files, directories, unlink-while-open, no hidden files,
renameat2's flags."""

from __future__ import annotations

import ctypes
import errno
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Mounted

RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(old: Path, new: Path, flags: int) -> None:
    """A client's renameat2(2), straight to libc (Python's os module has none)."""
    if _libc.renameat2(_AT_FDCWD, os.fsencode(old), _AT_FDCWD, os.fsencode(new), ctypes.c_uint(flags)):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(old), None, str(new))


def test_files_and_directories_pass_through(mounted: Mounted) -> None:
    (mounted.mnt / "sub").mkdir()
    (mounted.mnt / "sub" / "a.txt").write_text("hello")
    assert (mounted.backing / "sub" / "a.txt").read_text() == "hello"
    assert sorted(os.listdir(mounted.mnt)) == ["sub"]
    os.rename(mounted.mnt / "sub" / "a.txt", mounted.mnt / "sub" / "b.txt")
    assert os.listdir(mounted.backing / "sub") == ["b.txt"]
    os.symlink("b.txt", mounted.mnt / "sub" / "link")
    assert (mounted.mnt / "sub" / "link").read_text() == "hello"
    os.chmod(mounted.mnt / "sub" / "b.txt", 0o600)
    assert (mounted.backing / "sub" / "b.txt").stat().st_mode & 0o777 == 0o600


def test_unlinked_open_file_keeps_working_without_hidden_files(mounted: Mounted) -> None:
    path = mounted.mnt / "gone.bin"
    with open(path, "w+b") as f:
        f.write(b"x" * 10000)
        os.unlink(path)
        f.seek(0)
        assert f.read() == b"x" * 10000
        os.ftruncate(f.fileno(), 10)  # through the handle: the path is gone
        f.write(b"more")
        f.flush()
        # fstat comes with no handle: the daemon answers it for libfuse's hidden name of the file.
        st = os.fstat(f.fileno())
        assert (st.st_size, st.st_nlink) == (10004, 0)
        f.seek(0)
        assert f.read() == b"x" * 10 + bytes(9990) + b"more"
        os.fsync(f.fileno())
        assert os.listdir(mounted.mnt) == []
    assert os.listdir(mounted.backing) == []


def test_sqlite_cli_and_python_share_a_database(mounted: Mounted) -> None:
    db = mounted.path("shared.db")
    subprocess.run(["sqlite3", db, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);"], check=True)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT sum(x) FROM t").fetchone() == (3,)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("INSERT INTO t VALUES (3)")
    conn.commit()
    out = subprocess.run(["sqlite3", db, "SELECT sum(x) FROM t"], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "6"
    conn.close()
    assert not [n for n in os.listdir(mounted.backing) if n.startswith(".fuse_hidden")]


def test_times_set_through_the_mount_keep_what_is_omitted(mounted: Mounted) -> None:
    path = mounted.mnt / "t.txt"
    path.write_text("x")
    os.utime(path, ns=(5_000_000_000, 6_000_000_000))
    subprocess.run(["touch", "-m", "-d", "@100", str(path)], check=True)  # atime: UTIME_OMIT
    st = os.stat(mounted.backing / "t.txt")
    assert (st.st_atime_ns, st.st_mtime_ns) == (5_000_000_000, 100_000_000_000)
    os.symlink("t.txt", mounted.mnt / "link")
    subprocess.run(["touch", "-h", "-a", "-d", "@200", str(mounted.mnt / "link")], check=True)
    assert os.stat(mounted.backing / "t.txt").st_atime_ns == 5_000_000_000  # the link, not its target
    assert os.lstat(mounted.backing / "link").st_atime_ns == 200_000_000_000


def test_rename_exchange_swaps_and_replaces_nothing(mounted: Mounted) -> None:
    a, b = mounted.mnt / "a.txt", mounted.mnt / "b.txt"
    a.write_text("first")
    b.write_text("second")
    renameat2(a, b, RENAME_EXCHANGE)
    assert (a.read_text(), b.read_text()) == ("second", "first")
    assert sorted(os.listdir(mounted.backing)) == ["a.txt", "b.txt"]
    assert (mounted.backing / "a.txt").read_text() == "second"
    assert (mounted.backing / "b.txt").read_text() == "first"

    with pytest.raises(FileExistsError):
        renameat2(a, b, RENAME_NOREPLACE)
    assert (a.read_text(), b.read_text()) == ("second", "first")
    # (The kernel looks a rename's target up afresh, so this EEXIST is the kernel's: the daemon's
    # own check only matters for a name created behind the mount during the rename.)

    c = mounted.mnt / "c.txt"
    renameat2(a, c, RENAME_NOREPLACE)
    assert sorted(os.listdir(mounted.mnt)) == ["b.txt", "c.txt"]
    assert (mounted.backing / "c.txt").read_text() == "second"
    assert (mounted.backing / "b.txt").read_text() == "first"

    # Whiteouts are overlayfs's: refused (EPERM from the kernel without CAP_MKNOD), not renamed.
    with pytest.raises(OSError) as refused:
        renameat2(c, mounted.mnt / "e.txt", RENAME_WHITEOUT)
    assert refused.value.errno in (errno.EINVAL, errno.EPERM)
    assert sorted(os.listdir(mounted.backing)) == ["b.txt", "c.txt"]


def test_rename_exchange_of_two_sqlite_databases(mounted: Mounted) -> None:
    one, two = mounted.mnt / "one.db", mounted.mnt / "two.db"
    for path, rows in ((one, 100), (two, 300)):  # several pages each, different sizes
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t(x TEXT, pad BLOB)")
            conn.executemany("INSERT INTO t VALUES (?, randomblob(500))", [(str(path),)] * rows)
        conn.close()
    renameat2(one, two, RENAME_EXCHANGE)
    for path, other, rows in ((one, two, 300), (two, one, 100)):
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT x, count(*) FROM t GROUP BY x").fetchall() == [(str(other), rows)]
        conn.close()
    # .hoodydb/ holds the commit feed's sequence numbers (hoodydb/fs/feed.py).
    assert sorted(os.listdir(mounted.backing)) == [".hoodydb", "one.db", "two.db"]
