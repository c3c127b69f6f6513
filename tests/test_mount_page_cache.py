"""The kernel's page cache through the mount: reused when the file is unchanged, dropped when it
changed behind the mount, never two copies of one file under two names."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from tests.conftest import Mounted
from tests.proc_stats import daemon_bytes_read


def test_database_changed_behind_the_mount_between_opens_reads_fresh(mounted: Mounted) -> None:
    """The kernel keeps cached pages across opens; a change made in the backing directory while
    nobody had the file open (a restore, say) must still be seen, not read from stale pages."""
    db = mounted.path("restored.db")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t(v TEXT)")
        conn.execute("INSERT INTO t VALUES ('before')")
    conn.close()
    for _ in range(2):  # read through the mount, so the kernel holds the pages
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT v FROM t").fetchall() == [("before",)]
        conn.close()
    backing = mounted.backing / "restored.db"
    size = backing.stat().st_size
    native = sqlite3.connect(backing)
    native.execute("UPDATE t SET v = 'after!'")  # same length: the file keeps its size
    native.commit()
    native.close()
    assert backing.stat().st_size == size
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT v FROM t").fetchall() == [("after!",)]
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_unchanged_file_is_read_from_the_kernel_cache_after_reopening(mounted: Mounted) -> None:
    size = 8 << 20
    path = Path(mounted.path("big.bin"))
    path.write_bytes(os.urandom(size))
    time.sleep(0.1)  # timestamps older than a coarse clock's tick: trusted at the next open
    data = path.read_bytes()  # warm
    before = daemon_bytes_read(mounted.process.pid)
    assert path.read_bytes() == data
    assert path.read_bytes() == data
    read = daemon_bytes_read(mounted.process.pid) - before
    assert read < size // 8, f"the daemon read {read} bytes for two cached reads of {size}"


def test_a_database_with_two_names_stays_one_database(mounted: Mounted) -> None:
    """libfuse gives each hard link its own kernel inode, so each name its own page cache: a
    commit through one name was invisible through the other, and a write through that one
    then lost it (found by review; integrity_check still said ok)."""
    first, second = mounted.path("a.db"), mounted.path("b.db")
    conn = sqlite3.connect(first)
    conn.execute("CREATE TABLE t(v TEXT)")
    conn.execute("INSERT INTO t VALUES ('one')")
    conn.commit()
    conn.close()
    os.link(first, second)
    for name, value in [(second, None), (first, "two"), (second, "three")]:
        conn = sqlite3.connect(name)
        conn.execute("SELECT * FROM t").fetchall()
        if value is not None:
            conn.execute("INSERT INTO t VALUES (?)", (value,))
            conn.commit()
        time.sleep(0.1)  # let the timestamps age: the daemon trusts what it notes at close
        conn.close()
    for name in (first, second, str(mounted.backing / "a.db")):
        conn = sqlite3.connect(name)
        assert [v for (v,) in conn.execute("SELECT v FROM t")] == ["one", "two", "three"], name
        conn.close()


def test_a_write_through_the_mount_leaves_the_rest_of_the_cache_in_place(mounted: Mounted) -> None:
    """The kernel's own check (auto_inval_data, off) dropped a file's whole cache at the first
    stat after any write, since every write changes the mtime: each commit cost every reader."""
    size = 8 << 20
    path = mounted.path("shared.bin")
    Path(path).write_bytes(os.urandom(size))
    reader = os.open(path, os.O_RDONLY)
    try:
        data = bytearray(os.pread(reader, size, 0))  # warm
        writer = os.open(path, os.O_WRONLY)
        os.pwrite(writer, b"new!" * 1024, 0)
        os.close(writer)
        data[:4096] = b"new!" * 1024
        time.sleep(1.2)  # past the attribute timeout: the next stat asks the daemon
        os.fstat(reader)
        before = daemon_bytes_read(mounted.process.pid)
        assert os.pread(reader, size, 0) == data
        read = daemon_bytes_read(mounted.process.pid) - before
    finally:
        os.close(reader)
    assert read < size // 8, f"the daemon read {read} bytes to re-read a cached file of {size}"
