"""The mount's promises beyond plain contention: namespaces, readers, big files, start and stop."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hoodydb import control_client
from hoodydb.fs.process import FSTYPE, MountProcess, force_unmount, is_mounted, mounted_type
from tests.conftest import Mounted, MountFactory

pytestmark = pytest.mark.fuse

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


def test_sigterm_unmounts_even_with_a_waiting_client(tmp_path: Path) -> None:
    backing, mnt = tmp_path / "b", tmp_path / "m"
    backing.mkdir()
    m = MountProcess(backing, mnt).start()
    try:
        db = str(mnt / "t.db")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("CREATE TABLE t(x)")
        holder.execute("BEGIN IMMEDIATE")
        waiter = subprocess.Popen(["sqlite3", db, "INSERT INTO t VALUES (1)"], stderr=subprocess.PIPE)
        time.sleep(0.5)
        assert m.proc is not None
        m.proc.send_signal(signal.SIGTERM)
        assert m.proc.wait(timeout=10) == 0  # a signal is the normal way to stop
        waiter.communicate(timeout=10)
        assert waiter.returncode != 0  # an error, not a hang
        assert not is_mounted(mnt)
        holder.close()
    finally:
        m.stop()


def test_clear_errors_before_mounting(tmp_path: Path, mount_factory: MountFactory) -> None:
    def mount(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hoodydb", "mount", *args, "--foreground"],
            capture_output=True,
            text=True,
            timeout=30,
        )

    missing = mount(str(tmp_path / "nope"), str(tmp_path / "m1"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    busy = mount_factory()
    again = mount(str(busy.backing), str(busy.mnt))
    assert again.returncode != 0 and "busy" in again.stderr
    inside = mount(str(busy.backing), str(busy.backing / "sub"))
    assert inside.returncode != 0 and "inside the backing" in inside.stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_background_mount_detaches_into_a_session_of_its_own(tmp_path: Path) -> None:
    """`hoodydb mount` without --foreground returns once mounted; the daemon must outlive the
    terminal it was started from (its own session: no hangup, no Ctrl-C) and get every option."""
    backing, mnt = tmp_path / "b", tmp_path / "m"
    backing.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hoodydb",
            "mount",
            str(backing),
            str(mnt),
            "--lock-timeout=7",
            "--policy=off",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    pid = None
    try:
        assert done.returncode == 0, done.stderr
        found = re.search(r"pid (\d+)", done.stdout)
        assert found, done.stdout
        pid = int(found.group(1))
        assert mounted_type(mnt) == FSTYPE
        assert os.getsid(pid) == pid and os.getsid(pid) != os.getsid(0)
        report = control_client.query(control_client.socket_path(mnt))
        assert (report["pid"], report["lock_timeout"], report["policy"]) == (pid, 7.0, "off")
        conn = sqlite3.connect(mnt / "x.db")
        conn.execute("CREATE TABLE t(v)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        conn.close()
        assert (backing / "x.db").stat().st_size > 0
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False, capture_output=True)
        deadline = time.monotonic() + 15
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        force_unmount(mnt)
    assert pid is not None and not _alive(pid)  # unmounting ends the daemon
    assert not is_mounted(mnt)


def test_mounts_over_a_shared_bind_mount_and_reaches_its_peer(tmp_path: Path) -> None:
    """The container volume: `-v /srv/mnt:/mnt/hoodydb:rshared`. The mountpoint is itself a bind
    mount, the mount goes on top of it, and the host's side of the bind sees it.

    Regression: the bind counted as "already mounted", so the daemon refused to start while
    `hoodydb serve`, seeing a mount at the path, served the bare directory without the gate."""
    host, inner, backing = tmp_path / "host", tmp_path / "inner", tmp_path / "backing"
    for d in (host, inner, backing):
        d.mkdir()
    binds: list[Path] = []

    def bind(*args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True)

    try:
        bind("--bind", str(host), str(host))
        binds.append(host)
        bind("--make-shared", str(host))
        bind("--bind", str(host), str(inner))  # a peer of host, as the container's volume is
        binds.append(inner)
        assert mounted_type(inner) is not None and not is_mounted(inner)  # mounted, not FUSE
        with MountProcess(backing, inner):
            assert mounted_type(inner) == FSTYPE
            assert mounted_type(host) == FSTYPE  # propagated to the host side
            conn = sqlite3.connect(host / "x.db")
            conn.execute("CREATE TABLE t(v)")
            conn.execute("INSERT INTO t VALUES (1)")
            conn.commit()
            conn.close()
            assert (backing / "x.db").exists()  # the write went through the mount
        assert not is_mounted(inner) and not is_mounted(host)
    finally:
        for path in reversed(binds):
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


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


def _proc_number(pid: int, file: str, key: str) -> int:
    """The number after `key:` in /proc/PID/FILE (status, io)."""
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/{file}")


def _rss_kib(pid: int) -> int:
    return _proc_number(pid, "status", "VmRSS")


def test_daemon_memory_stays_flat_under_contention(mounted: Mounted) -> None:
    """Regression: per-read bytes copies from libfuse's threads fragmented the C heap, and the
    daemon grew by about 2.7 MB per 1,600 contended transactions, without end."""
    from bench.workload import WorkloadSpec, run_workload

    spec = WorkloadSpec("keep", "wal", 0, 2, 800)
    db = mounted.path("memory.db")
    first = run_workload(db, spec)  # warm-up: threads, caches, arenas
    assert first.ok == spec.expected
    before = _rss_kib(mounted.process.pid)
    for _ in range(3):
        result = run_workload(db, spec)
        assert result.ok == spec.expected and result.integrity == "ok", result.summary()
    grown = _rss_kib(mounted.process.pid) - before
    assert grown < 2048, f"daemon RSS grew {grown} KiB over 4,800 transactions"


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


def _daemon_bytes_read(pid: int) -> int:
    return _proc_number(pid, "io", "rchar")


def test_unchanged_file_is_read_from_the_kernel_cache_after_reopening(mounted: Mounted) -> None:
    size = 8 << 20
    path = Path(mounted.path("big.bin"))
    path.write_bytes(os.urandom(size))
    time.sleep(0.1)  # timestamps older than a coarse clock's tick: trusted at the next open
    data = path.read_bytes()  # warm
    before = _daemon_bytes_read(mounted.process.pid)
    assert path.read_bytes() == data
    assert path.read_bytes() == data
    read = _daemon_bytes_read(mounted.process.pid) - before
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
        before = _daemon_bytes_read(mounted.process.pid)
        assert os.pread(reader, size, 0) == data
        read = _daemon_bytes_read(mounted.process.pid) - before
    finally:
        os.close(reader)
    assert read < size // 8, f"the daemon read {read} bytes to re-read a cached file of {size}"


def test_daemon_runs_on_one_cpu_while_clients_queue_and_on_all_after(mounted: Mounted) -> None:
    from bench.workload import WorkloadSpec, run_workload
    from tests.test_fs_affinity import _eventually, _thread_cpus

    pid = mounted.process.pid
    everything = os.sched_getaffinity(0)
    assert all(cpus == everything for cpus in _thread_cpus(pid)), "no contention yet"
    seen: list[list[set[int]]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(_thread_cpus(pid))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        spec = WorkloadSpec("keep", "wal", 0, 8, 150)
        result = run_workload(mounted.path("pin.db"), spec)
    finally:
        done.set()
        watcher.join()
    assert result.ok == spec.expected and result.integrity == "ok", result.summary()
    pinned = [sample for sample in seen if len({frozenset(c) for c in sample}) == 1 and len(sample[0]) == 1]
    assert pinned, f"never on one CPU in {len(seen)} samples"
    assert _eventually(lambda: all(cpus == everything for cpus in _thread_cpus(pid)), 5)


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
