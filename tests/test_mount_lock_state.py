"""What `hoodydb locks` shows of readers beside writers, and that the lock tables stay bounded by
what is open: thousands of files and databases opened, closed and deleted leave nothing behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from tests.conftest import Mounted
from tests.test_faults import database_report, locks_report, locks_text, wait_until

HOLDING_READER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("SELECT count(*) FROM t").fetchone()  # (its connection's first transaction)
conn.execute("SELECT count(*) FROM t").fetchone()  # a reader now
cur = conn.execute("SELECT x FROM t")
cur.fetchone()  # a half-read cursor keeps the read transaction open
print("reading", flush=True)
sys.stdin.readline()
print(len(cur.fetchall()) + 1, flush=True)
"""


def test_locks_shows_the_readers_beside_and_the_writers(mounted: Mounted) -> None:
    db = mounted.path("r.db")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLDING_READER, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().strip() == "reading"
        conn.execute("INSERT INTO t VALUES (100)")  # beside the open cursor, at once
        entry = database_report(mounted, "/r.db")
        assert entry["beside"]["count"] == 1
        assert entry["beside"]["oldest_pid"] == reader.pid
        assert "HOLDING_READER" not in entry["beside"]["oldest_command"]
        assert entry["beside"]["oldest_command"].startswith(sys.executable)
        assert entry["writers"] == [os.getpid()]
        (owner,) = [o for o in entry["owners"] if o["pid"] == reader.pid]
        assert (owner["state"], owner["why"]) == ("beside", "window passed")
        assert owner["command"] == entry["beside"]["oldest_command"]
        text = locks_text(mounted)
        assert f"reading beside: 1, the oldest pid {reader.pid}" in text
        assert f"beside: pid {reader.pid} for " in text and "(window passed)" in text
        assert f"writers (take turns): pids {os.getpid()}" in text
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "100"  # its snapshot: the insert is not in it
    finally:
        reader.kill()
        reader.communicate()  # (closes the pipes)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (101,)
    conn.close()


def test_lock_tables_stay_bounded_by_what_is_open(mounted: Mounted) -> None:
    for i in range(1500):
        path = mounted.path(f"plain-{i}.bin")
        with open(path, "wb") as f:
            f.write(b"x")
        with open(path, "rb") as f:
            f.read()
        if i % 2:
            os.unlink(path)
    for i in range(150):
        path = mounted.path(f"db-{i}.db")
        conn = sqlite3.connect(path)
        if i % 3 == 0:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t(x)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        conn.close()
        if i % 2:
            os.unlink(path)

    def settled() -> bool:  # RELEASE reaches the daemon after close() has returned
        tables = locks_report(mounted)["tables"]
        return all(tables[k] == 0 for k in ("files", "databases", "names", "intents", "handles"))

    wait_until(settled)
    report = locks_report(mounted)
    assert report["tables"]["retired"] == 150  # the counters of each database, by name
    assert report["databases"] and all(d["admitted"] is None for d in report["databases"])
