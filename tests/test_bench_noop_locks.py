"""bench/noop_locks.py: the mount whose lock decisions cost nothing must grant every lock.

It is the single-process benchmark's measure of what the lock manager costs; a target that refused
its locks would measure errors instead (it did, once `setlk` answered an `Outcome`: its `0` was read
as a refusal).
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from hoodydb.fs.process import MountProcess


def test_the_noop_locks_mount_grants_every_lock(tmp_path: Path) -> None:
    (tmp_path / "backing").mkdir()
    with MountProcess(
        tmp_path / "backing",
        tmp_path / "mnt",
        stderr_path=tmp_path / "mount.log",
        program=[sys.executable, "-m", "bench.noop_locks"],
    ) as mount:
        for mode in ("delete", "wal"):
            path = mount.mountpoint / f"{mode}.db"
            conn = sqlite3.connect(path, isolation_level=None, timeout=0)
            conn.execute(f"PRAGMA journal_mode={mode}")
            conn.execute("CREATE TABLE t(x)")
            conn.execute("BEGIN IMMEDIATE")  # RESERVED, or the WAL's WRITE lock
            conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
            conn.execute("COMMIT")
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            conn.close()
