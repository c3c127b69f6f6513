"""Thousands of writers at once on a mount with default options, and a stuck holder among them.

2,000 one-shot `sqlite3` CLI inserts started together (bench/burst.py spawns them; no busy
timeout, as a user runs them): none fails, every row is there. A process that holds BEGIN
EXCLUSIVE and never commits still makes the writers behind it fail: with a rollback journal after
`--lock-timeout`; in WAL mode, since it sleeps in its transaction, after the readers' patience
(1 s), as natively they would at once. `hoodydb locks` names it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.burst import burst, prepare
from bench.workload import check_database
from tests.conftest import Mounted, MountFactory
from tests.test_faults import locks_report, locks_text, wait_until

CLIENTS = 2000


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_two_thousand_cli_writers_at_once_all_commit(mounted: Mounted, mode: str, tmp_path: Path) -> None:
    db = mounted.path("burst.db")
    prepare(db, mode)
    ok, errors, _, _ = burst(db, CLIENTS, [], str(tmp_path / "clients.log"))
    assert (ok, dict(errors)) == (CLIENTS, {})
    assert check_database(db) == (CLIENTS, "ok")
    report = locks_report(mounted)
    (entry,) = [d for d in report["databases"] if d["database"] == "/burst.db"]
    assert entry["counters"]["timeouts"] == 0 and entry["counters"]["refused_full"] == 0
    assert report["parked"]["refused"] == 0 and report["parked"]["now"] == 0
    assert report["parked"]["bound"] >= CLIENTS  # the default fits the machine, not 256


HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("INSERT INTO t(v) VALUES (-1)")
print("holding", flush=True)
sys.stdin.readline()  # never commits while the test runs
"""


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_a_stuck_holder_makes_waiters_fail_after_the_lock_timeout(
    mount_factory: MountFactory, mode: str
) -> None:
    mounted = mount_factory("--lock-timeout", "2")
    db = mounted.path("stuck.db")
    prepare(db, mode)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    with holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        t0 = time.monotonic()
        writers = [
            subprocess.Popen(
                ["sqlite3", db, f"INSERT INTO t(v) VALUES ({i})"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for i in range(5)
        ]
        time.sleep(0.4)  # (in WAL mode they are let go at 1 s: the holder sleeps)
        report = locks_report(mounted)
        (entry,) = [d for d in report["databases"] if d["database"] == "/stuck.db"]
        assert entry["admitted"]["pid"] == holder.pid and "BEGIN EXCLUSIVE" in entry["admitted"]["command"]
        assert entry["still_seconds"] >= 0.3 and len(entry["waiting"]) == 5
        text = locks_text(mounted)
        assert f"running: pid {holder.pid}" in text and "the turn last moved" in text
        for w in writers:
            _, err = w.communicate(timeout=30)
            assert w.returncode != 0 and b"database is locked" in err, err
        took = time.monotonic() - t0
        bound = 1.0 if mode == "wal" else 2.0  # reader_patience; --lock-timeout
        assert 0.9 * bound <= took < 15, took
        holder.kill()
    wait_until(lambda: subprocess.run(["sqlite3", db, "INSERT INTO t(v) VALUES (7)"]).returncode == 0)
    assert check_database(db) == (1, "ok")  # the holder's insert was rolled back with it
