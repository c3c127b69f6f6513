"""Locks beyond plain contention: the lock bytes of a big database, --policy=off, and every probe
answered by the lock manager."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import Mounted, MountFactory


def test_database_larger_than_one_gib_crosses_the_lock_bytes(mounted: Mounted) -> None:
    db = mounted.path("big.db")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA page_size=65536")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB)")
    chunk = os.urandom(1 << 20)
    for i in range(1100):  # 1100 MiB: past the PENDING byte at 1 GiB
        conn.execute("INSERT INTO blobs(b) VALUES (?)", (chunk[i % 97 :] + chunk[: i % 97],))
        if i % 100 == 99:
            conn.commit()
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert os.path.getsize(mounted.backing / "big.db") > 1 << 30
    check = subprocess.run(
        ["sqlite3", db, "PRAGMA quick_check; SELECT count(*), sum(length(b)) FROM blobs WHERE id > 1000;"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert check.stdout.split() == ["ok", f"100|{100 << 20}"]


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_policy_off_is_plain_posix_and_shows_the_errors(
    mount_factory: MountFactory, journal_mode: str
) -> None:
    """The same mount without the gate fails like a local disk: the gate is what removes the errors."""
    from bench.workload import WorkloadSpec, run_workload

    off = mount_factory("--policy=off")
    spec = WorkloadSpec("txn", journal_mode, busy_timeout=0, writers=16, transactions=5)
    result = run_workload(off.path("off.db"), spec)
    assert result.error_count > 0
    assert set(result.errors) == {"database is locked"}
    assert (result.rows, result.integrity) == (result.ok, "ok")
    serial = mount_factory()
    result = run_workload(serial.path("serial.db"), spec)
    assert (result.error_count, result.ok, result.rows, result.integrity) == (0, 80, 80, "ok")


SHM_BUILDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)  # DMS, exclusively: rebuilding the index
print("building", flush=True)
time.sleep(0.5)
fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 128)  # done: a connection like any other
time.sleep(60)
"""


def test_every_lock_probe_is_answered_by_the_lock_manager(mounted: Mounted) -> None:
    """A connection that finds the -shm's DMS byte write-locked takes SQLITE_BUSY, so the lock
    manager holds such an F_GETLK until the first connection has built the index (docs/
    architecture.md, "DMS probe"). libfuse's high-level layer answers F_GETLK from its own copy
    of the granted locks when that copy shows a conflict, without asking us: that copy must stay
    empty, or probes see what the manager would not show them (and, lagging, locks already gone)."""
    import fcntl
    import struct

    open(mounted.path("x.db"), "wb").close()
    shm = mounted.path("x.db-shm")
    with open(shm, "wb") as f:
        f.write(b"\0" * 32768)
    builder = subprocess.Popen(
        [sys.executable, "-c", SHM_BUILDER, shm], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert builder.stdout is not None and builder.stdout.readline().strip() == "building"
        fd = os.open(shm, os.O_RDWR)
        try:
            probe = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 128, 1, 0)
            kind, _, start, length, pid = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, probe))
        finally:
            os.close(fd)
        assert (kind, start, length, pid) == (fcntl.F_RDLCK, 128, 1, builder.pid)  # never F_WRLCK
    finally:
        builder.kill()
        builder.communicate()
