"""Readers beside writers (policy `beside`, the default): a process that only reads never holds a
writer up, and a writer never fails because someone is reading.

Under policy `serial` every transaction not from a read-only open takes a FIFO turn, so a reader
that keeps a transaction open holds every writer out until `--lock-timeout`. Each test here
names, in its docstring, what it shows beyond that. Real clients only: Python's sqlite3 in
separate processes, the sqlite3 CLI, Perl DBD::SQLite and PHP's SQLite3.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import Mounted, MountFactory
from tests.test_faults import database_report

Outcome = tuple[int, str]  # (returncode, stderr)


def start(argv: list[str]) -> subprocess.Popen[str]:
    """A client whose stdin the test writes to and whose stdout it reads line by line."""
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def say(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def hear(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """The client's next line of output; its stderr if it ended (or was stuck) instead."""
    assert proc.stdout is not None
    watchdog = threading.Timer(timeout, proc.kill)  # a generous bound, so a stuck client fails the test
    watchdog.start()
    try:
        line = proc.stdout.readline()
    finally:
        watchdog.cancel()
    if not line:
        proc.wait(timeout=60)
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"client exited {proc.returncode} without a line: {err}")
    return line.strip()


def start_all(commands: list[list[str]]) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]


def finish(procs: list[subprocess.Popen[str]], timeout: float = 120) -> list[Outcome]:
    """Wait for every client started by start_all."""
    try:
        return [(p.returncode, err) for p in procs for _, err in [p.communicate(timeout=timeout)]]
    finally:
        for p in procs:  # only left running when the test is failing
            p.kill()
            p.wait()


def run_all(commands: list[list[str]]) -> list[Outcome]:
    """Start every client at once and wait for all of them."""
    return finish(start_all(commands))


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [(code, err.strip()) for code, err in outcomes if code or err]


def create(db: str, journal_mode: str, rows: int) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x INT, who TEXT)")
    conn.executemany("INSERT INTO t(x, who) VALUES (?, 'initial')", [(i,) for i in range(rows)])
    conn.commit()
    conn.close()


def count_and_check(db: str) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        conn.close()


# Autocommit inserts on one connection, busy timeout 0 (SQLite's default): any refusal is an error.
PY_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
for i in range(int(sys.argv[3])):
    conn.execute("INSERT INTO t(x, who) VALUES (?, ?)", (i, sys.argv[2]))
conn.close()
"""


def py_writers(db: str, writers: int, each: int) -> list[list[str]]:
    return [[sys.executable, "-c", PY_WRITER, db, f"w{i}", str(each)] for i in range(writers)]


# Keeps a statement half-read (so its read transaction open) until told on stdin.
HALF_READ_CURSOR = """
import sqlite3, sys
path, how = sys.argv[1:3]
if how == "read-only-open":
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0, isolation_level=None)
else:
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    conn.execute("SELECT count(*) FROM t").fetchone()  # an earlier read-only transaction
if how == "after-a-write":
    conn.execute("INSERT INTO t(x, who) VALUES (-1, 'reader')")  # a writer, as a backup tool is
cur = conn.execute("SELECT x FROM t ORDER BY id")
cur.fetchone()
print(conn.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
sys.stdin.readline()
during = conn.execute("SELECT count(*) FROM t").fetchone()[0]  # still in the cursor's snapshot
rest = len(cur.fetchall())  # the cursor ends, and its transaction with it
after = conn.execute("SELECT count(*) FROM t").fetchone()[0]
print(during, 1 + rest, after, flush=True)
"""


@pytest.mark.parametrize("how", ["after-a-read", "after-a-write", "read-only-open"])
def test_wal_writers_finish_beside_a_half_read_cursor(mounted: Mounted, how: str) -> None:
    """A reader with a statement half-read (a web handler streaming a result) and 16 writer
    processes with busy timeout 0: every writer is done while the cursor is still open.

    `after-a-read`: a read-write connection whose last transaction only read. `after-a-write`:
    a process that has written, as a backup tool (Litestream) or a report in a web worker has:
    its long read holds the turn only for its window, then goes on beside. `read-only-open`:
    `?mode=ro` always reads beside (serial already let such opens by)."""
    db = mounted.path("cursor.db")
    initial, writers, each = 100, 16, 20
    create(db, "wal", initial)
    base = initial + (how == "after-a-write")
    reader = start([sys.executable, "-c", HALF_READ_CURSOR, db, how])
    try:
        assert hear(reader) == str(base)
        outcomes = run_all(py_writers(db, writers, each))
        assert failures(outcomes) == []
        assert reader.poll() is None  # the writers finished beside the open cursor
        entry = database_report(mounted, "/cursor.db")
        (owner,) = [o for o in entry["owners"] if o["pid"] == reader.pid]
        why = {
            "after-a-read": "window passed",
            "after-a-write": "window passed",
            "read-only-open": "read-only open",
        }
        assert (owner["state"], owner["why"]) == ("beside", why[how])
        say(reader, "stop")
        # The cursor's snapshot held still; once it ended, the reader saw every commit.
        assert hear(reader).split() == [str(base), str(base), str(base + writers * each)]
        assert reader.wait(timeout=60) == 0
    finally:
        reader.kill()
        reader.communicate()
    assert count_and_check(db) == base + writers * each


def test_wal_cli_session_left_in_a_transaction_does_not_hold_cli_writers(mounted: Mounted) -> None:
    """Someone types `BEGIN; SELECT count(*) FROM t;` in an interactive sqlite3 shell and leaves
    it there. Its transaction is the connection's first: it takes the turn tentatively and
    passes it on, since it does not write. 20 one-shot `sqlite3 DB "INSERT ..."` then succeed
    while the session still shows its old snapshot until COMMIT."""
    db = mounted.path("session.db")
    initial, writers = 5, 20
    create(db, "wal", initial)
    session = start(["sqlite3", db])
    try:
        say(session, "BEGIN; SELECT count(*) FROM t;")
        assert hear(session) == str(initial)
        outcomes = run_all(
            [["sqlite3", db, f"INSERT INTO t(x, who) VALUES ({i}, 'cli')"] for i in range(writers)]
        )
        assert failures(outcomes) == []
        assert session.poll() is None  # still inside its transaction
        say(session, "SELECT count(*) FROM t;")
        assert hear(session) == str(initial)
        say(session, "COMMIT; SELECT count(*) FROM t;")
        assert hear(session) == str(initial + writers)
        say(session, ".quit")
        assert session.wait(timeout=60) == 0
    finally:
        session.kill()
        _, err = session.communicate()
    assert err == ""
    assert count_and_check(db) == initial + writers


def loop(argvs: list[list[str]], into: list[subprocess.CompletedProcess[str]]) -> None:
    for argv in argvs:
        into.append(subprocess.run(argv, capture_output=True, text=True, timeout=120))


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_cli_writer_loops_beside_a_read_only_cli_loop(mounted: Mounted, journal_mode: str) -> None:
    """Two shell loops of one-shot `sqlite3 DB "INSERT ..."` beside a loop of
    `sqlite3 -readonly DB "SELECT count(*) FROM t"`, all with busy timeout 0: no failure of
    either kind. In rollback-journal mode a reader that arrives during a commit (the writer
    holds PENDING or EXCLUSIVE) waits for it instead of failing."""
    db = mounted.path(f"loops-{journal_mode}.db")
    create(db, journal_mode, 0)
    inserts, selects = 300, 150
    writes: list[list[subprocess.CompletedProcess[str]]] = [[], []]
    reads: list[subprocess.CompletedProcess[str]] = []
    loops = [
        ([["sqlite3", db, f"INSERT INTO t(x, who) VALUES ({i}, 'l{n}')"] for i in range(inserts)], out)
        for n, out in enumerate(writes)
    ]
    loops.append(([["sqlite3", "-readonly", db, "SELECT count(*) FROM t"]] * selects, reads))
    threads = [threading.Thread(target=loop, args=args) for args in loops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [r for out in writes for r in out]
    failed_writes = [(r.returncode, r.stderr.strip()) for r in done if r.returncode or r.stderr]
    failed_reads = [(r.returncode, r.stderr.strip()) for r in reads if r.returncode or r.stderr]
    assert (len(failed_writes), len(failed_reads)) == (0, 0), (failed_writes[:5], failed_reads[:5])
    seen = [int(r.stdout) for r in reads]
    assert seen == sorted(seen)  # one reader after another: never an older snapshot than the last
    assert count_and_check(db) == len(done) == 2 * inserts


# A read-write connection that is a reader (it ended a read-only transaction before) holds a
# read transaction for a while; in rollback-journal mode nobody can commit meanwhile.
HOLDING_READER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
conn.execute("SELECT count(*) FROM t").fetchone()
conn.execute("BEGIN")
print(conn.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
sys.stdin.readline()
time.sleep(float(sys.argv[2]))
print(conn.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
conn.execute("COMMIT")
"""


def test_rollback_writers_wait_for_a_reader_and_then_commit(mounted: Mounted) -> None:
    """Rollback journal: a commit needs EXCLUSIVE, so a reader's open transaction delays every
    commit, as natively. 8 writers x 10 autocommit inserts (busy timeout 0) beside a reader
    holding its transaction about 3 s (well below `--lock-timeout`): they wait, then all commit.
    Beside readers give writers nobody to wait for in the turn order; this checks that the
    commit's EXCLUSIVE still waits for them instead of failing. (It passes under `serial` too,
    where the reader's turn holds the writers back before they start.)"""
    db = mounted.path("rollback.db")
    initial, writers, each = 10, 8, 10
    create(db, "delete", initial)
    reader = start([sys.executable, "-c", HOLDING_READER, db, "3"])
    try:
        assert hear(reader) == str(initial)
        procs = start_all(py_writers(db, writers, each))
        say(reader, "hold")  # the writers are on their way while the reader holds its snapshot
        try:
            assert hear(reader) == str(initial)  # nothing committed under a reader's SHARED lock
        finally:
            outcomes = finish(procs)
        assert failures(outcomes) == []
        assert reader.wait(timeout=60) == 0
    finally:
        reader.kill()
        reader.communicate()
    assert count_and_check(db) == initial + writers * each


# Readers in other languages: an earlier read-only transaction, then one held open until told.
PERL_READER = r"""
use strict; use warnings; use DBI;
$| = 1;
# DBD::SQLite begins with BEGIN IMMEDIATE by default, which is a write lock: a reader says BEGIN.
my $dbh = DBI->connect("dbi:SQLite:dbname=$ARGV[0]", "", "",
    { RaiseError => 1, PrintError => 0, AutoCommit => 1, sqlite_use_immediate_transaction => 0 });
$dbh->sqlite_busy_timeout(0);
$dbh->selectrow_array('SELECT count(*) FROM t');
$dbh->begin_work;
print scalar($dbh->selectrow_array('SELECT count(*) FROM t')), "\n";
<STDIN>;
my ($during) = $dbh->selectrow_array('SELECT count(*) FROM t');
$dbh->commit;
my ($after) = $dbh->selectrow_array('SELECT count(*) FROM t');
print "$during $after\n";
$dbh->disconnect;
"""
PHP_READER = r"""
$db = new SQLite3($argv[1]);
$db->enableExceptions(true);
$db->busyTimeout(0);
$db->querySingle('SELECT count(*) FROM t');
$db->exec('BEGIN');
echo $db->querySingle('SELECT count(*) FROM t'), "\n";
fgets(STDIN);
$during = $db->querySingle('SELECT count(*) FROM t');
$db->exec('COMMIT');
echo $during, ' ', $db->querySingle('SELECT count(*) FROM t'), "\n";
$db->close();
"""
READERS = {"perl": ["perl", "-e", PERL_READER], "php": ["php", "-r", PHP_READER]}


@pytest.mark.parametrize("language", sorted(READERS))
def test_wal_reader_in_another_language_holds_no_python_writer(mounted: Mounted, language: str) -> None:
    """A Perl (DBD::SQLite) or PHP (SQLite3) reader keeps a read transaction open; 8 Python
    writers x 20 inserts, busy timeout 0, complete beside it."""
    db = mounted.path(f"{language}.db")
    initial, writers, each = 3, 8, 20
    create(db, "wal", initial)
    reader = start([*READERS[language], db])
    try:
        assert hear(reader) == str(initial)
        assert failures(run_all(py_writers(db, writers, each))) == []
        assert reader.poll() is None
        say(reader, "stop")
        assert hear(reader).split() == [str(initial), str(initial + writers * each)]
        assert reader.wait(timeout=60) == 0
    finally:
        reader.kill()
        _, err = reader.communicate()
    assert err == ""
    assert count_and_check(db) == initial + writers * each


# A: a reader (two read-only transactions first) that opens a transaction, reads, and tries to
# write only after B has written. B: BEGIN IMMEDIATE, insert, commit (busy timeout 10 s).
READ_THEN_WRITE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
for _ in range(2):
    conn.execute("SELECT count(*) FROM t").fetchone()
conn.execute("BEGIN")
print(conn.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
sys.stdin.readline()
try:
    conn.execute("INSERT INTO t(x, who) VALUES (0, 'a')")
except sqlite3.OperationalError as exc:
    conn.execute("ROLLBACK")
    print(f"failed: {exc}", flush=True)
else:
    conn.execute("COMMIT")
    print("committed", flush=True)
"""
WRITE_AND_COMMIT = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO t(x, who) VALUES (0, 'b')")
print("inserted", flush=True)
conn.execute("COMMIT")
print("committed", flush=True)
"""


def read_then_write_race(db: str, journal_mode: str) -> tuple[str, str, dict[str, int]]:
    """A reads, B writes, A tries to write: A's answer, B's last word and who is in the table."""
    create(db, journal_mode, 1)
    a = start([sys.executable, "-c", READ_THEN_WRITE, db])
    b: subprocess.Popen[str] | None = None
    try:
        assert hear(a) == "1"
        b = start([sys.executable, "-c", WRITE_AND_COMMIT, db])
        assert hear(b) == "inserted"
        if journal_mode == "wal":
            # In WAL B commits beside A's snapshot; in rollback mode its COMMIT waits for A's
            # SHARED lock, so A asks to write while B holds RESERVED and PENDING.
            assert hear(b) == "committed"
        say(a, "write")
        a_says = hear(a)
        b_says = hear(b) if journal_mode != "wal" else "committed"
        assert (a.wait(timeout=60), b.wait(timeout=60)) == (0, 0)
    finally:
        for proc in (a, b):
            if proc is not None:
                proc.kill()
                proc.communicate()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = dict(conn.execute("SELECT who, count(*) FROM t GROUP BY who").fetchall())
    conn.close()
    return a_says, b_says, rows


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_read_then_write_after_another_commit_fails_as_natively(
    mount_factory: MountFactory, tmp_path: Path, journal_mode: str
) -> None:
    """The one error the policy keeps, exactly as natively: a reader's transaction that has read
    and then asks to write after another process wrote fails with "database is locked"
    (SQLITE_BUSY; in WAL, SQLITE_BUSY_SNAPSHOT: its snapshot is stale, no wait can help). A's
    write commits nothing, B's commit is kept, integrity holds.

    This documents the `beside` policy's one error case, identical to native. Under `serial`
    the story differs: A's transaction holds the turn, so B waits for it instead of writing
    first (here B never says "inserted" and the test fails on that, not on a wrong answer).
    """
    native_dir = tmp_path / "native"
    native_dir.mkdir()
    native = read_then_write_race(str(native_dir / "rw.db"), journal_mode)
    assert native == ("failed: database is locked", "committed", {"initial": 1, "b": 1})
    mounted = read_then_write_race(mount_factory().path("rw.db"), journal_mode)
    assert mounted == native


LOOKUP_WORKER = """
import random, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
rows = conn.execute("SELECT count(*) FROM t").fetchone()[0]  # the schema read
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[2])):
    conn.execute("SELECT x FROM t WHERE id = ?", (random.randint(1, rows),)).fetchall()
    time.sleep(0.001)
print("done", flush=True)
"""


def test_read_write_lookups_with_no_commit_among_them_take_turns_without_a_second_look(
    mounted: Mounted,
) -> None:
    """Web workers' lookups on read-write connections take turns; with no commit among them the
    WAL index cannot change, so every hand-off grants the read slot as it was asked: no EAGAIN
    to look again, and no turn held for a retry that cannot come (that held each hand-off
    through the worker's think time, and 8 such workers ran at a fifth of their speed)."""
    db = mounted.path("lookups.db")
    create(db, "wal", 1000)
    workers = [start([sys.executable, "-c", LOOKUP_WORKER, db, "150"]) for _ in range(4)]
    try:
        assert [hear(w) for w in workers] == ["ready"] * 4
        before = database_report(mounted, "/lookups.db")["counters"]
        for w in workers:
            say(w, "go")
        assert [hear(w) for w in workers] == ["done"] * 4
        after = database_report(mounted, "/lookups.db")["counters"]
    finally:
        for w in workers:
            w.kill()
            w.communicate()
    waits = after["waits"] - before["waits"]
    assert waits > 0, (before, after)  # (they did take turns)
    assert after["granted_as_asked"] - before["granted_as_asked"] == waits, (before, after)
    assert after["expired_reservations"] == before["expired_reservations"], (before, after)
    assert count_and_check(db) == 1000
