"""Many clients on one database through the mount: namespaces, read-only readers, a kept
connection, writes inside reads, maintenance and a hot journal beside writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Mounted, MountFactory

UNSHARE = ["unshare", "--mount", "--pid", "--fork", "--mount-proc"]


def run_together(commands: list[list[str]], timeout: float = 120) -> None:
    """Start every client at once and wait for all of them: each must exit 0."""
    procs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for command in commands]
    errors = [p.communicate(timeout=timeout)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), errors


NAMESPACED_WRITER = """
import os, sqlite3, sys
assert os.getpid() == 1, "not in a PID namespace of its own"
for i in range(int(sys.argv[3])):
    conn = sqlite3.connect(sys.argv[1], timeout=0)
    conn.execute("BEGIN")
    n = conn.execute("SELECT count(*) FROM t").fetchone()[0]
    conn.execute("INSERT INTO t(who, seen) VALUES (?, ?)", (sys.argv[2], n))
    conn.commit()
    conn.close()
"""


@pytest.mark.parametrize("wal", [False, True], ids=["rollback", "wal"])
def test_writers_in_separate_mount_and_pid_namespaces(mounted: Mounted, wal: bool) -> None:
    """Containers on one host: each writer has its own mount and PID namespace; only the mount is shared."""
    db = mounted.path("ns.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, seen INT)")
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.commit()
    conn.close()
    per_writer, writers = 15, 6
    run_together(
        [
            [*UNSHARE, sys.executable, "-c", NAMESPACED_WRITER, db, f"c{i}", str(per_writer)]
            for i in range(writers)
        ]
    )
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    seen = [r[0] for r in conn.execute("SELECT seen FROM t ORDER BY id")]
    conn.close()
    # Every transaction saw every earlier commit: the count it read is its position.
    assert seen == list(range(per_writer * writers))


LONG_READER = """
import sqlite3, sys, time
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, isolation_level=None)
conn.execute("BEGIN")
print(conn.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
time.sleep(float(sys.argv[2]))
print(conn.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
conn.execute("COMMIT")
"""


def test_read_only_reader_runs_beside_writers_in_wal(mounted: Mounted) -> None:
    db = mounted.path("ro.db")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES (1)")
    reader = subprocess.Popen([sys.executable, "-c", LONG_READER, db, "3"], stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "1"
    started = time.monotonic()
    writer = sqlite3.connect(db, timeout=0, isolation_level=None)
    for _ in range(5):
        writer.execute("INSERT INTO t VALUES (2)")
    elapsed = time.monotonic() - started
    writer.close()
    out, _ = reader.communicate(timeout=10)
    conn.close()
    assert elapsed < 2.0, f"writers waited {elapsed:.1f}s behind a read-only reader"
    assert out.strip() == "1"  # its snapshot held still while the writes committed


def test_rollback_mode_writer_waits_for_a_read_only_reader_instead_of_failing(mounted: Mounted) -> None:
    """In rollback-journal mode a reader's SHARED lock keeps the writer from committing: the
    writer (busy timeout 0) waits for it inside the daemon, and new readers wait for the commit."""
    db = mounted.path("rj.db")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    reader = subprocess.Popen(
        [sys.executable, "-c", LONG_READER, db, "1.5"], stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "1"
    started = time.monotonic()
    writer = sqlite3.connect(db, timeout=0, isolation_level=None)
    writer.execute("INSERT INTO t VALUES (2)")
    waited = time.monotonic() - started
    out, _ = reader.communicate(timeout=10)
    assert out.strip() == "1"  # the reader's transaction never saw a half-committed state
    assert 0.5 < waited < 10
    check = subprocess.run(
        ["sqlite3", "-readonly", db, "SELECT count(*) FROM t"], capture_output=True, text=True
    )
    assert (check.returncode, check.stdout.strip()) == (0, "2")
    writer.close()


def test_kept_apsw_connection_and_cli_writers_share_a_wal_database(mounted: Mounted) -> None:
    """apsw's SQLite (SQLITE_ENABLE_SETLK_TIMEOUT) takes the WAL WRITE lock before a read slot.

    Regression: that lock used to be granted outside the turn, and every CLI writer admitted
    after it then failed with "database is locked".
    """
    import apsw

    db = mounted.path("apsw.db")
    subprocess.run(["sqlite3", db, "PRAGMA journal_mode=WAL; CREATE TABLE t(src, n)"], check=True)
    conn = apsw.Connection(db)
    conn.set_busy_timeout(30000)
    clis = [
        subprocess.Popen(
            ["sqlite3", db, f"BEGIN; SELECT count(*) FROM t; INSERT INTO t VALUES ('cli', {n}); COMMIT;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(20)
    ]
    for n in range(20):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SELECT count(*) FROM t").fetchall()
        conn.execute("INSERT INTO t VALUES ('apsw', ?)", (n,))
        conn.execute("COMMIT")
    failures = [err for p in clis if (err := p.communicate(timeout=60)[1]) or p.returncode]
    assert failures == []
    assert conn.execute("SELECT src, count(*) FROM t GROUP BY src ORDER BY src").fetchall() == [
        ("apsw", 20),
        ("cli", 20),
    ]
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


WRITE_WHILE_ITERATING = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
for _ in range(int(sys.argv[3])):
    for (k,) in conn.execute("SELECT k FROM src"):  # the read statement stays open...
        conn.execute("INSERT INTO dst(who, k) VALUES (?, ?)", (sys.argv[2], k))  # ...across each write
conn.close()
"""


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_writes_inside_an_open_read_statement_from_many_processes(mounted: Mounted, mode: str) -> None:
    """Generated code often writes row by row while iterating a query on the same connection:
    each autocommit write commits inside a read transaction that stays open. Natively, with
    busy timeout 0, two such processes fail at once."""
    db = mounted.path("iterate.db")
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("CREATE TABLE src(k)")
    conn.executemany("INSERT INTO src VALUES (?)", [(i,) for i in range(10)])
    conn.execute("CREATE TABLE dst(who, k)")
    conn.commit()
    conn.close()
    writers, rounds = 8, 4
    run_together(
        [[sys.executable, "-c", WRITE_WHILE_ITERATING, db, f"w{i}", str(rounds)] for i in range(writers)]
    )
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    per_writer = dict(conn.execute("SELECT who, count(*) FROM dst GROUP BY who").fetchall())
    conn.close()
    assert per_writer == {f"w{i}": rounds * 10 for i in range(writers)}


MAINTENANCE = """
import sqlite3, sys
for _ in range(int(sys.argv[3])):
    conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
    conn.execute("VACUUM")
    if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    copy = sqlite3.connect(sys.argv[2])
    conn.backup(copy)  # the online backup API, page by page
    copy.close()
    conn.close()
"""
PADDED_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
for _ in range(int(sys.argv[3])):
    conn.execute("INSERT INTO t(who, pad) VALUES (?, randomblob(500))", (sys.argv[2],))
conn.close()
"""


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_vacuum_checkpoint_and_backup_run_beside_writers(mounted: Mounted, tmp_path: Path, mode: str) -> None:
    db = mounted.path("maintained.db")
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, pad BLOB)")
    conn.commit()
    conn.close()
    writers, per_writer = 4, 60
    copy = tmp_path / "copy.db"
    run_together(
        [[sys.executable, "-c", PADDED_WRITER, db, f"w{i}", str(per_writer)] for i in range(writers)]
        + [[sys.executable, "-c", MAINTENANCE, db, str(copy), "4"]]
    )
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (writers * per_writer,)
    conn.close()
    backup = sqlite3.connect(copy)
    assert backup.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    backup.close()


CRASHING_WRITER = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size=5")  # spill: the database file is changed before the commit
conn.execute("BEGIN")
conn.execute("UPDATE t SET v = 'changed ' || v")
os.kill(os.getpid(), 9)
"""

LOOPING_READER = """
import os, sqlite3, sys, time
path, stop, out = sys.argv[1:4]
seen = []
while not os.path.exists(stop):
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0)
        row = conn.execute("SELECT count(*), sum(v LIKE 'changed%') FROM t").fetchone()
        conn.close()
        seen.append(f"{time.monotonic()} ok {row[0]} {row[1]}")
    except sqlite3.Error as exc:
        seen.append(f"{time.monotonic()} error {exc}")
open(out, "w").write("\\n".join(seen))
"""


def test_a_hot_journal_rollback_is_not_starved_by_readers(
    mount_factory: MountFactory, tmp_path: Path
) -> None:
    """SQLite 3.42+ (apsw's) rolls back a hot journal by going from SHARED straight to EXCLUSIVE.
    Read-only connections that keep arriving (each failing with SQLITE_READONLY_ROLLBACK, as
    natively, until the rollback is done) would keep the SHARED range held: with 12 of them the
    rollback used to wait 1.4-2.2 s here. It must get through well inside a 1 s lock timeout, and
    from then on every reader sees the database as it was before the crashed transaction."""
    import apsw

    m = mount_factory("--lock-timeout=1")
    db = m.path("x.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(v)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 2000)
    conn.commit()
    conn.close()
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, db], check=False)
    assert (m.backing / "x.db-journal").stat().st_size > 0  # hot: its writer is gone
    stop = tmp_path / "stop"
    outs = [tmp_path / f"reader{i}" for i in range(12)]
    readers = [subprocess.Popen([sys.executable, "-c", LOOPING_READER, db, str(stop), str(o)]) for o in outs]
    try:
        time.sleep(1.0)
        rollback = apsw.Connection(db)
        assert rollback.execute("SELECT count(*), sum(v LIKE 'changed%') FROM t").fetchall() == [(2000, 0)]
        rolled_back = time.monotonic()
        rollback.close()
        time.sleep(0.5)
    finally:
        stop.touch()
        assert [r.wait(timeout=60) for r in readers] == [0] * len(readers)
    for out in outs:
        lines = [line.split(" ", 2) for line in out.read_text().splitlines()]
        errors = [(float(t), what) for t, kind, what in lines if kind == "error"]
        assert {what for _, what in errors} <= {"attempt to write a readonly database"}
        assert all(t < rolled_back for t, _ in errors)  # none after the rollback
        assert ["ok", "2000 0"] in [[kind, what] for _, kind, what in lines]
    assert not (m.backing / "x.db-journal").exists()
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()
