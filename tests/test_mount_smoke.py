"""The mount works as a filesystem: files, directories, unlink-while-open, no hidden files."""

from __future__ import annotations

import os
import sqlite3
import subprocess

from tests.conftest import Mounted


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
        # (fstat is the one call that cannot work here: the kernel sends no handle with it and
        # libfuse has no path left for the file.)
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
