"""The contention matrix (bench/workload.py's patterns) on a real mount: zero errors, every row, integrity ok.

Each cell is a fresh database on one module-wide mount; writers are forked processes using
Python's stock sqlite3. The native cells run the same workload on the plain tmp dir to show the
errors the mount removes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.workload import JOURNAL_MODES, PATTERNS, WorkloadSpec, run_transfers, run_workload
from hoodydb.fs.process import MountProcess

# Small per-cell transaction counts keep the 36 cells to about a minute on 2 cores.
TRANSACTIONS = {1: 20, 16: 5, 64: 3}


@pytest.fixture(scope="module")
def mnt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert os.path.exists("/dev/fuse"), "/dev/fuse is required (CI has it)"
    assert shutil.which("fusermount3"), "fusermount3 is required: make test installs fuse3"
    root = tmp_path_factory.mktemp("matrix")
    backing = root / "backing"
    backing.mkdir()
    with MountProcess(backing, root / "mnt", stderr_path=root / "mount.log") as mount:
        yield mount.mountpoint


@pytest.mark.fuse
@pytest.mark.parametrize("writers", [1, 16, 64])
@pytest.mark.parametrize("busy_timeout", [0, 5])
@pytest.mark.parametrize("journal_mode", JOURNAL_MODES)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_mount_cell_has_no_errors(
    mnt: Path, pattern: str, journal_mode: str, busy_timeout: int, writers: int
) -> None:
    spec = WorkloadSpec(pattern, journal_mode, busy_timeout, writers, TRANSACTIONS[writers])
    result = run_workload(str(mnt / f"{spec.label()}.db"), spec)
    assert not result.errors, result.summary()
    assert result.crashed_workers == 0, result.summary()
    assert result.ok == result.rows == spec.expected, result.summary()
    assert result.integrity == "ok", result.summary()
    if pattern == "txn":
        # Each transaction inserted MAX(v) + 1: a serial history leaves v = 1..rows, no duplicate.
        conn = sqlite3.connect(mnt / f"{spec.label()}.db")
        try:
            distinct, top = conn.execute("SELECT count(DISTINCT v), MAX(v) FROM t").fetchone()
        finally:
            conn.close()
        assert distinct == top == spec.expected, result.summary()


@pytest.mark.parametrize(("pattern", "journal_mode"), [("ai", "delete"), ("keep", "wal"), ("txn", "wal")])
def test_native_cell_shows_the_problem(tmp_path: Path, pattern: str, journal_mode: str) -> None:
    """Without the mount, 16 writers with busy timeout 0 get 'database is locked'."""
    spec = WorkloadSpec(pattern, journal_mode, 0, 16, 20)
    result = run_workload(str(tmp_path / "native.db"), spec)
    assert result.errors.get("database is locked", 0) > 0, result.summary()
    # Errors, but no corruption and no lost commits: SQLite refuses, it does not lie.
    assert result.ok == result.rows, result.summary()
    assert result.integrity == "ok", result.summary()


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_native_read_then_write_fails_even_with_busy_timeout(tmp_path: Path, journal_mode: str) -> None:
    """Native SQLite: a read-then-write transaction cannot be retried by SQLite's busy handler."""
    spec = WorkloadSpec("txn", journal_mode, 5, 16, 20)
    result = run_workload(str(tmp_path / "native.db"), spec)
    assert result.error_count > 0, result.summary()
    assert result.ok == result.rows, result.summary()


@pytest.mark.fuse
@pytest.mark.parametrize("journal_mode", JOURNAL_MODES)
def test_conserved_sum_holds_under_many_writers(mnt: Path, journal_mode: str) -> None:
    result = run_transfers(
        str(mnt / f"accounts-{journal_mode}.db"),
        journal_mode=journal_mode,
        writers=48,
        transfers=20,
        readers=4,
        busy_timeout=0,
    )
    assert not result.transfer_errors, result.summary()
    assert not result.reader_errors, result.summary()
    assert result.crashed_workers == 0, result.summary()
    assert result.transfers_ok == 48 * 20, result.summary()
    assert result.reader_checks > 0, result.summary()
    assert result.bad_sums == [], result.summary()
    assert result.final_total == result.expected_total, result.summary()
    assert result.integrity == "ok", result.summary()
