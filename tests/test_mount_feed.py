"""The commit feed on a real mount: real writers of several kinds (the sqlite3 CLI, Python's
sqlite3 in other processes), each commit seen once, in order, with its writer's pid; rollbacks,
even after SQLite spilled pages to the file, give no event; numbers survive a remount."""

from __future__ import annotations

import json
import queue
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from hoodydb import control_client
from tests.conftest import Mounted, MountFactory
from tests.feed_events import WATCH, take_commits

# Commits `commits` times, and rolls back a transaction between two commits; a rolled back one
# after a cache spill too (cache_size=2 pages and 40 KiB of rows: SQLite writes them to the WAL, or
# to the database file with the journal, before it rolls back). Prints its pid and how many it committed.
PY_WRITER = """
import os, sqlite3, sys
db, commits = sys.argv[1], int(sys.argv[2])
conn = sqlite3.connect(db, timeout=30, isolation_level=None)
conn.execute("PRAGMA cache_size=2")
done = 0
for i in range(commits):
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t(who, x) VALUES ('py', ?)", (i,))
    conn.execute("COMMIT")
    done += 1
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO t(who, x) VALUES ('gone', ?)", [(b"z" * 4000,) for _ in range(10)])
    conn.execute("ROLLBACK")
print(os.getpid(), done, flush=True)
"""


def no_faults(m: Mounted) -> None:
    """The daemon logged no fault of the feed (a fault there never fails the client's call)."""
    log = m.log.read_text(errors="replace")
    assert "commit feed" not in log and "Traceback" not in log, log[-3000:]


@contextmanager
def watching(m: Mounted, db: str = "*", since: int | None = None) -> Iterator[queue.Queue[dict[str, Any]]]:
    """The feed as a queue of events, read by a thread; the "start" message is taken first."""
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        try:
            for event in control_client.watch(control_client.socket_path(m.mnt), db, since, heartbeat=0.2):
                events.put(event)
                if stop.is_set():
                    return
        except OSError:
            pass

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert events.get(timeout=10)["type"] == "start"
    try:
        yield events
    finally:
        stop.set()


def commits(events: queue.Queue[dict[str, Any]], n: int, quiet: float = 1.0) -> list[dict[str, Any]]:
    return take_commits(events, n, WATCH, quiet)


def make_table(path: str, wal: bool) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={'WAL' if wal else 'DELETE'}")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, x)")
    conn.close()


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "rollback"])
def test_every_commit_of_every_writer_once_in_order_with_its_pid(mounted: Mounted, wal: bool) -> None:
    db = mounted.path("app.db")
    make_table(db, wal)
    with watching(mounted, "app.db") as events:
        # Side by side: three Python processes and eight sqlite3 CLI runs, two of them rolling back.
        py = [
            subprocess.Popen([sys.executable, "-c", PY_WRITER, db, "15"], stdout=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        cli = [
            subprocess.Popen(
                ["sqlite3", "-cmd", ".timeout 30000", db, f"INSERT INTO t(who, x) VALUES ('cli', {i})"]
            )
            for i in range(6)
        ]
        rolled_back = [
            subprocess.Popen(
                ["sqlite3", "-cmd", ".timeout 30000", db, "BEGIN; INSERT INTO t(who) VALUES (0); ROLLBACK;"]
            )
            for _ in range(2)
        ]
        expected: Counter[int] = Counter()
        for p in py:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0
            pid, done = map(int, out.split())
            assert pid == p.pid
            expected[pid] += done
        for p in cli:
            assert p.wait(timeout=60) == 0
            expected[p.pid] += 1
        for p in rolled_back:
            assert p.wait(timeout=60) == 0
        got = commits(events, sum(expected.values()))
    assert [e["seq"] for e in got] == list(range(2, 2 + len(got)))  # 1 was the CREATE TABLE
    assert Counter(e["pid"] for e in got) == expected
    assert all(e["db"] == "app.db" and e["pages"] >= 1 for e in got)
    assert all(e["journal"] == ("wal" if wal else "rollback") for e in got)
    assert all("sqlite3" in e["command"] or "python" in e["command"] for e in got)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM t WHERE who != 'gone'").fetchone()[0] == len(got)
    assert conn.execute("SELECT count(*) FROM t WHERE who = 'gone'").fetchone()[0] == 0
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    no_faults(mounted)


def test_the_watch_command_prints_each_commit(mounted: Mounted) -> None:
    db = mounted.path("team/cli.db")
    (mounted.mnt / "team").mkdir()
    make_table(db, wal=True)
    watch = subprocess.Popen(
        [sys.executable, "-m", "hoodydb", "watch", str(mounted.mnt), "--db", "team/*", "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        assert json.loads(watch.stdout.readline())["type"] == "start"
        writer = subprocess.run(["sqlite3", db, "INSERT INTO t(x) VALUES (1)"], check=True)
        assert writer.returncode == 0
        line = json.loads(watch.stdout.readline())
        while line["type"] == "heartbeat":
            line = json.loads(watch.stdout.readline())
        assert (line["type"], line["db"], line["seq"], line["pages"]) == ("commit", "team/cli.db", 2, 1)
    finally:
        watch.terminate()
        watch.communicate(timeout=10)


def test_numbers_never_go_back_across_a_remount_and_a_resumed_feed_misses_nothing(
    mount_factory: MountFactory,
) -> None:
    m = mount_factory(name="a")
    db = m.path("app.db")
    make_table(db, wal=True)  # 1
    for i in range(4):  # 2..5
        subprocess.run(["sqlite3", db, f"INSERT INTO t(x) VALUES ({i})"], check=True)
    with watching(m, "app.db", since=2) as events:
        assert [e["seq"] for e in commits(events, 3, quiet=0.3)] == [3, 4, 5]
    m.process.stop()
    again = Mounted(m.backing, m.mnt, m.process.__class__(m.backing, m.mnt).start(), m.log)
    try:
        with watching(again, "app.db") as events:
            subprocess.run(["sqlite3", db, "INSERT INTO t(x) VALUES (9)"], check=True)
            assert [e["seq"] for e in commits(events, 1, quiet=0.3)] == [6]
    finally:
        again.process.stop()


CHECKPOINTER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    time.sleep(0.005)
"""


def test_checkpoints_beside_the_writers_give_no_event_and_lose_none(mounted: Mounted) -> None:
    """A checkpoint writes the database file while WAL commits wait to be announced: neither is
    taken for the other, and the WAL restarts (its count of frames starts again) change nothing."""
    db = mounted.path("ckpt.db")
    make_table(db, wal=True)
    with watching(mounted, "ckpt.db") as events:
        checkpointer = subprocess.Popen([sys.executable, "-c", CHECKPOINTER, db, "3"])
        writers = [
            subprocess.Popen([sys.executable, "-c", PY_WRITER, db, "40"], stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        done = 0
        for p in writers:
            out, _ = p.communicate(timeout=120)
            done += int(out.split()[1])
        assert checkpointer.wait(timeout=60) == 0
        got = commits(events, done)
    assert [e["seq"] for e in got] == list(range(2, 2 + done))
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == done
    conn.close()
    no_faults(mounted)
