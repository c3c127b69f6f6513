"""Faults on a real mount: killed clients, interrupted waits, a killed daemon.

A kill must never cost a committed row, never corrupt, and never leave the queue stuck.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoodydb.control_client import socket_path
from hoodydb.fs.control import SEND_SECONDS
from hoodydb.fs.process import MountProcess, force_unmount
from tests.conftest import Mounted, MountFactory

pytestmark = pytest.mark.fuse

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO t(who) VALUES ('holder')")
print("holding", flush=True)
time.sleep(600)
"""

WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
t0 = time.monotonic()
conn.execute("BEGIN")
conn.execute("INSERT INTO t(who) VALUES (?)", (sys.argv[2],))
conn.execute("COMMIT")
print(round(time.monotonic() - t0, 3), flush=True)
"""


def make_db(path: str, wal: bool) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
    conn.execute("INSERT INTO t(who) VALUES ('before')")
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.commit()
    conn.close()


_started: list[subprocess.Popen[str]] = []


def start(code: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _started.append(proc)
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate()


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    """Kill what a test started and close its pipes, whatever the test's outcome."""
    yield
    while _started:
        kill(_started.pop())


def wait_for_line(proc: subprocess.Popen[str], expected: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == expected, f"got {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"


def locks_report(m: Mounted) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, "-m", "hoodydb", "locks", str(m.mnt), "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def database_report(m: Mounted, name: str) -> dict:  # type: ignore[type-arg]
    """`hoodydb locks --json`'s entry for the database at `name` ("/x.db")."""
    (entry,) = [d for d in locks_report(m)["databases"] if d["database"] == name]
    return entry  # type: ignore[no-any-return]


def locks_text(m: Mounted) -> str:
    """`hoodydb locks MOUNTPOINT` as a person reads it."""
    out = subprocess.run(
        [sys.executable, "-m", "hoodydb", "locks", str(m.mnt)], check=True, capture_output=True, text=True
    )
    return out.stdout


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def rows(path: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [r[0] for r in conn.execute("SELECT who FROM t ORDER BY id")]
    finally:
        conn.close()


@pytest.mark.parametrize("wal", [False, True], ids=["rollback", "wal"])
def test_killed_holder_hands_over_within_a_second(mounted: Mounted, wal: bool) -> None:
    db = mounted.path("k.db")
    make_db(db, wal)
    holder = start(HOLDER, db)
    wait_for_line(holder, "holding")
    waiter = start(WRITER, db, "waiter")
    wait_until(lambda: any(d["waiting"] for d in locks_report(mounted)["databases"]))
    report = next(d for d in locks_report(mounted)["databases"] if d["waiting"])
    assert report["admitted"]["pid"] == holder.pid
    wait_until(lambda: locks_report(mounted)["pinned_to_cpu"] == max(os.sched_getaffinity(0)))
    assert report["waiting"][0]["pid"] == waiter.pid
    killed_at = time.monotonic()
    kill(holder)
    _, err = waiter.communicate(timeout=10)
    assert waiter.returncode == 0, err
    assert time.monotonic() - killed_at < 1.0
    assert rows(db) == ["before", "waiter"]  # the holder's uncommitted row was rolled back


def test_killed_waiter_leaves_the_queue(mounted: Mounted) -> None:
    db = mounted.path("w.db")
    make_db(db, wal=True)
    holder = start(HOLDER, db)
    wait_for_line(holder, "holding")
    doomed = start(WRITER, db, "doomed")
    wait_until(lambda: any(d["waiting"] for d in locks_report(mounted)["databases"]))
    kill(doomed)
    wait_until(lambda: not any(d["waiting"] for d in locks_report(mounted)["databases"]), timeout=3)
    kill(holder)
    after = start(WRITER, db, "after")
    _, err = after.communicate(timeout=10)
    assert after.returncode == 0, err
    assert rows(db) == ["before", "after"]


def test_ctrl_c_of_a_waiting_sqlite3_cli_returns_promptly(mounted: Mounted) -> None:
    db = mounted.path("c.db")
    make_db(db, wal=False)
    holder = start(HOLDER, db)
    wait_for_line(holder, "holding")
    cli = subprocess.Popen(["sqlite3", db, "INSERT INTO t(who) VALUES ('cli')"], text=True)
    wait_until(lambda: any(d["waiting"] for d in locks_report(mounted)["databases"]))
    sent = time.monotonic()
    cli.send_signal(signal.SIGINT)
    cli.communicate(timeout=5)
    assert time.monotonic() - sent < 1.0
    kill(holder)
    assert rows(db) == ["before"]


def test_wait_bound_gives_database_is_locked_not_a_hang(mount_factory: MountFactory) -> None:
    m = mount_factory("--lock-timeout=1")
    db = m.path("b.db")
    make_db(db, wal=False)
    holder = start(HOLDER, db)
    wait_for_line(holder, "holding")
    waiter = start(WRITER, db, "late")
    _, err = waiter.communicate(timeout=10)
    assert waiter.returncode != 0
    assert "database is locked" in err
    counters = database_report(m, "/b.db")["counters"]
    assert counters["timeouts"] == 1
    kill(holder)


def test_a_control_client_that_reads_nothing_is_cut_off(mounted: Mounted) -> None:
    """A client of the control socket that sends a byte a second and reads nothing holds none of
    the daemon's threads for long, and `hoodydb locks` answers meanwhile. The holder's long
    command line, which the report shows, makes the report more than a socket buffer holds."""
    db = mounted.path("big.db")
    make_db(db, wal=True)
    holder = start(HOLDER, db, "x" * 100_000, "y" * 100_000)
    wait_for_line(holder, "holding")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stuck:
        stuck.connect(str(socket_path(mounted.mnt)))
        connected = time.monotonic()
        assert locks_report(mounted)["databases"][0]["admitted"]["pid"] == holder.pid
        while True:
            try:
                stuck.send(b".")
            except OSError:  # EPIPE or ECONNRESET: the daemon hung up
                break
            assert time.monotonic() - connected < SEND_SECONDS + 2, "the daemon still waits for it"
            time.sleep(1)
    kill(holder)


COUNTING_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=5, isolation_level=None)
i = 0
while True:
    try:
        conn.execute("INSERT INTO t(who) VALUES (?)", (f"{sys.argv[2]}-{i}",))
    except sqlite3.Error as e:
        print("error", e, flush=True)
        break
    print("acked", f"{sys.argv[2]}-{i}", flush=True)
    i += 1
"""


@pytest.mark.parametrize("wal", [False, True], ids=["rollback", "wal"])
def test_daemon_killed_under_load_loses_no_acknowledged_commit(mounted: Mounted, wal: bool) -> None:
    db = mounted.path("d.db")
    make_db(db, wal)
    writers = [start(COUNTING_WRITER, db, f"w{i}") for i in range(4)]
    time.sleep(1.5)
    mounted.process.kill()
    acked: set[str] = set()
    for w in writers:
        out, _ = w.communicate(timeout=30)  # clients get an error, never a hang
        acked |= {line.split()[1] for line in out.splitlines() if line.startswith("acked")}
    force_unmount(mounted.mnt)
    assert len(acked) > 10
    # A fresh mount of the same files: SQLite rolls back any hot journal on first read.
    with MountProcess(mounted.backing, mounted.mnt):
        present = set(rows(db))
    assert acked <= present


KILLABLE_WRITER = """
import os, sys
kind, path, acks = sys.argv[1:4]
if kind == "apsw":
    import apsw
    conn = apsw.Connection(path)
    run = conn.execute
else:
    import sqlite3
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    run = conn.execute
done = open(acks, "a")
seq = 0
while True:
    run("BEGIN IMMEDIATE")
    run("INSERT INTO t(who, seq, pad) VALUES (?, ?, randomblob(3000))", (acks, seq))
    run("UPDATE total SET n = n + 1")
    run("COMMIT")
    done.write(f"{seq}\\n")  # acknowledged: committed, and this process knows it
    done.flush()
    seq += 1
"""

CHECKING_READER = """
import json, os, sqlite3, sys
path, stop = sys.argv[1:3]
errors = {}
while not os.path.exists(stop):
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0)
        rows, total = conn.execute("SELECT (SELECT count(*) FROM t), (SELECT n FROM total)").fetchone()
        conn.close()
        assert rows == total, (rows, total)
    except sqlite3.Error as exc:
        errors[str(exc)] = errors.get(str(exc), 0) + 1
print(json.dumps(errors))
"""


@pytest.mark.parametrize("wal", [False, True], ids=["journal", "wal"])
def test_writers_killed_at_random_beside_readers(mounted: Mounted, tmp_path: Path, wal: bool) -> None:
    """Writers (apsw's SQLite and Python's) SIGKILLed at random, mid-transaction or mid-commit,
    leaving hot journals, while read-only readers keep reading. No acknowledged commit may be
    lost, the table and its counter must agree in every read, and nobody may ever see a
    malformed database. Readers may see SQLITE_READONLY_ROLLBACK while a hot journal waits for a
    writer, as on a local disk.

    Regression: libfuse's high-level layer answered F_GETLK from its own copy of the granted
    locks, which lagged behind ours; a dead writer's RESERVED lingered there long enough for a
    reader's hot-journal check to take the journal for a live one and read a half-written
    database ("database disk image is malformed", in readers and writers alike)."""
    path = mounted.path("x.db")
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(who, seq, pad)")
    conn.execute("CREATE TABLE total(n)")
    conn.execute("INSERT INTO total VALUES (0)")
    conn.commit()
    conn.close()
    kinds = ["apsw", "sqlite3"] * 4
    acks = [tmp_path / f"acks{i}" for i in range(len(kinds))]

    def spawn(i: int) -> subprocess.Popen[str]:
        # Each incarnation acknowledges into its own file, so a sequence number is never reused.
        ack = acks[i].with_suffix(f".{len(list(tmp_path.glob(acks[i].name + '.*')))}")
        ack.touch()
        return start(KILLABLE_WRITER, kinds[i], path, str(ack))

    writers = [spawn(i) for i in range(len(kinds))]
    stop = tmp_path / "stop"
    readers = [start(CHECKING_READER, path, str(stop)) for _ in range(4)]
    rng = random.Random(1)
    kills = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.01, 0.1))
        i = rng.randrange(len(writers))
        assert writers[i].poll() is None, writers[i].communicate()[1][-2000:]  # a writer never fails
        kill(writers[i])
        kills += 1
        writers[i] = spawn(i)
    for w in writers:
        assert w.poll() is None, w.communicate()[1][-2000:]
        kill(w)
    stop.touch()
    allowed = set() if wal else {"attempt to write a readonly database"}
    for r in readers:
        out, err = r.communicate(timeout=60)
        assert r.returncode == 0, err[-2000:]
        assert set(json.loads(out)) <= allowed, out
    conn = sqlite3.connect(path, timeout=30)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = conn.execute("SELECT who, seq FROM t").fetchall()
    assert conn.execute("SELECT n FROM total").fetchone() == (len(rows),)
    conn.close()
    acknowledged = {(str(f), int(seq)) for f in tmp_path.glob("acks*.*") for seq in f.read_text().split()}
    assert acknowledged <= set(rows)
    assert kills > 50 and len(acknowledged) > 100
