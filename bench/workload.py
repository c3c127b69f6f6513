"""Contention workloads: many writer processes against one SQLite file, counted and timed.

Shared by the tests (which assert zero errors, every row present, integrity ok) and by the
benchmarks (which print throughput and latency). Every writer is a forked process using Python's
stock `sqlite3` module, so the workload is exactly what an unmodified client does.

Patterns:
  ai    connect / INSERT / commit / close for every transaction (typical generated code)
  keep  one connection per process, autocommit INSERTs
  txn   BEGIN; SELECT; INSERT; COMMIT: read, then write, which SQLite cannot retry on busy

The conserved-sum workload (`run_transfers`) moves money between accounts with read-then-write
transactions while reader processes check that the total never changes.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

PATTERNS = ("ai", "keep", "txn")
JOURNAL_MODES = ("delete", "wal")

_CTX = mp.get_context("fork")
_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class WorkloadSpec:
    pattern: str
    journal_mode: str  # "delete" or "wal"
    busy_timeout: float  # seconds, as passed to sqlite3.connect(timeout=...)
    writers: int
    transactions: int  # per writer

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, not {self.pattern!r}")
        if self.journal_mode not in JOURNAL_MODES:
            raise ValueError(f"journal_mode must be one of {JOURNAL_MODES}, not {self.journal_mode!r}")

    @property
    def expected(self) -> int:
        return self.writers * self.transactions

    def label(self) -> str:
        return (
            f"{self.pattern}-{self.journal_mode}-bt{self.busy_timeout:g}-w{self.writers}x{self.transactions}"
        )


class Latencies:
    """p50 and p99 of a result record's `latencies` (seconds)."""

    latencies: list[float]

    @property
    def p50(self) -> float:
        return _percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return _percentile(self.latencies, 99)


@dataclass
class WorkloadResult(Latencies):
    spec: WorkloadSpec
    ok: int
    errors: Counter[str]
    elapsed: float  # wall time from the common start to the last writer's end
    latencies: list[float]  # seconds, one per successful transaction
    rows: int
    integrity: str
    crashed_workers: int = 0  # writers that died without reporting (must be 0)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def tx_per_s(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.spec.label()}: ok={self.ok}/{self.spec.expected} rows={self.rows} "
            f"errors={dict(self.errors)} crashed={self.crashed_workers} tx/s={self.tx_per_s:.0f} "
            f"p50={self.p50 * 1e3:.2f}ms p99={self.p99 * 1e3:.2f}ms integrity={self.integrity}"
        )


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def remove_database(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def prepare_database(path: str, journal_mode: str) -> None:
    """A fresh database with the workload's table, in the given journal mode."""
    remove_database(path)
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, w INT, v INT)")
        conn.commit()
        mode = conn.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0]
        if mode != journal_mode:
            raise RuntimeError(f"journal_mode={journal_mode} gave {mode}")
    finally:
        conn.close()


def check_database(path: str, table: str = "t") -> tuple[int, str]:
    """(row count, integrity_check) read after the run, with a generous busy timeout."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()
    return rows, integrity


# Children report through a one-way pipe; a child that dies without reporting counts as crashed.
_Report = tuple[int, dict[str, int], list[float]]


def _one_transaction(conn: sqlite3.Connection, pattern: str, wid: int, i: int) -> None:
    if pattern == "txn":
        conn.execute("BEGIN")
        v = conn.execute("SELECT COALESCE(MAX(v), 0) FROM t").fetchone()[0]
        conn.execute("INSERT INTO t(w, v) VALUES (?, ?)", (wid, v + 1))
        conn.execute("COMMIT")
    else:
        conn.execute("INSERT INTO t(w, v) VALUES (?, ?)", (wid, i))


def _rollback_quietly(conn: sqlite3.Connection | None) -> None:
    if conn is None:
        return
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _writer(path: str, spec: WorkloadSpec, wid: int, start: Event, out: Connection) -> None:
    ok = 0
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    conn: sqlite3.Connection | None = None
    start.wait(_START_TIMEOUT)
    for i in range(spec.transactions):
        t0 = time.perf_counter()
        try:
            if conn is None:
                # Autocommit (isolation_level=None): each INSERT outside BEGIN is its own
                # transaction, and `txn` issues its own BEGIN/COMMIT.
                conn = sqlite3.connect(path, timeout=spec.busy_timeout, isolation_level=None)
            _one_transaction(conn, spec.pattern, wid, i)
            if spec.pattern == "ai":
                conn.close()
                conn = None
            latencies.append(time.perf_counter() - t0)
            ok += 1
        except sqlite3.Error as e:
            errors[str(e)] += 1
            _rollback_quietly(conn)
            if spec.pattern == "ai" and conn is not None:
                conn.close()
                conn = None
    if conn is not None:
        conn.close()
    out.send((ok, dict(errors), latencies))
    out.close()


class _Children:
    """Forked children released together by one event, each reporting once through a pipe."""

    def __init__(self) -> None:
        self.start = _CTX.Event()
        self._procs: list[tuple[BaseProcess, Connection]] = []

    def spawn(self, target: Callable[..., None], *args: object) -> None:
        recv, send = _CTX.Pipe(duplex=False)
        proc = _CTX.Process(target=target, args=(*args, self.start, send), daemon=True)
        proc.start()
        send.close()
        self._procs.append((proc, recv))

    def collect(self, first: int, last: int, deadline: float) -> tuple[list[_Report], int]:
        """Reports of children [first, last); (reports, number that crashed or overran the deadline)."""
        reports: list[_Report] = []
        crashed = 0
        for proc, recv in self._procs[first:last]:
            try:
                if recv.poll(max(0.0, deadline - time.monotonic())):
                    reports.append(recv.recv())
                else:
                    crashed += 1
                    proc.kill()
            except EOFError:
                crashed += 1
            proc.join(10)
            recv.close()
        return reports, crashed

    def kill_all(self) -> None:
        for proc, recv in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)
            recv.close()


def run_workload(
    path: str, spec: WorkloadSpec, *, prepare: bool = True, time_limit: float = 600.0
) -> WorkloadResult:
    """Run `spec` against the database at `path` (created fresh unless prepare=False)."""
    if prepare:
        prepare_database(path, spec.journal_mode)
    children = _Children()
    try:
        for wid in range(spec.writers):
            children.spawn(_writer, path, spec, wid)
        t0 = time.perf_counter()
        children.start.set()
        reports, crashed = children.collect(0, spec.writers, time.monotonic() + time_limit)
        elapsed = time.perf_counter() - t0
    finally:
        children.kill_all()
    ok, errors, latencies = tally(reports)
    rows, integrity = check_database(path)
    return WorkloadResult(spec, ok, errors, elapsed, latencies, rows, integrity, crashed)


def tally(reports: list[_Report]) -> tuple[int, Counter[str], list[float]]:
    """The children's reports summed: successes, errors by message, every latency."""
    ok = 0
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    for n, errs, lat in reports:
        ok += n
        errors.update(errs)
        latencies.extend(lat)
    return ok, errors, latencies


# --- the conserved-sum workload -------------------------------------------------------------


@dataclass
class TransferResult:
    transfers_ok: int
    transfer_errors: Counter[str]
    reader_checks: int  # sums read by the concurrent readers
    reader_errors: Counter[str]
    bad_sums: list[int]  # sums seen by readers that differ from the expected total (must be empty)
    expected_total: int
    final_total: int
    integrity: str
    elapsed: float
    latencies: list[float] = field(default_factory=list)
    crashed_workers: int = 0

    @property
    def tx_per_s(self) -> float:
        return self.transfers_ok / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        return (
            f"transfers ok={self.transfers_ok} errors={dict(self.transfer_errors)} "
            f"reader checks={self.reader_checks} reader errors={dict(self.reader_errors)} "
            f"bad sums={self.bad_sums[:5]} total={self.final_total}/{self.expected_total} "
            f"crashed={self.crashed_workers} tx/s={self.tx_per_s:.0f} integrity={self.integrity}"
        )


def prepare_accounts(path: str, journal_mode: str, accounts: int, balance: int) -> None:
    remove_database(path)
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INT NOT NULL)")
        conn.executemany("INSERT INTO accounts VALUES (?, ?)", [(i, balance) for i in range(accounts)])
        conn.commit()
        conn.execute(f"PRAGMA journal_mode={journal_mode}")
    finally:
        conn.close()


def _transferrer(
    path: str, busy_timeout: float, transfers: int, accounts: int, seed: int, start: Event, out: Connection
) -> None:
    rng = random.Random(seed)
    ok = 0
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    start.wait(_START_TIMEOUT)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    for _ in range(transfers):
        src, dst = rng.sample(range(accounts), 2)
        t0 = time.perf_counter()
        try:
            conn.execute("BEGIN")
            balance = conn.execute("SELECT balance FROM accounts WHERE id = ?", (src,)).fetchone()[0]
            amount = rng.randint(0, max(0, min(balance, 50)))
            conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, src))
            conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, dst))
            conn.execute("COMMIT")
            latencies.append(time.perf_counter() - t0)
            ok += 1
        except sqlite3.Error as e:
            errors[str(e)] += 1
            _rollback_quietly(conn)
    conn.close()
    out.send((ok, dict(errors), latencies))
    out.close()


def _sum_checker(path: str, busy_timeout: float, stop: Event, start: Event, out: Connection) -> None:
    """Reads the total in its own transaction until `stop`; reports sums as 'latencies' (ints)."""
    checks = 0
    errors: Counter[str] = Counter()
    sums: list[float] = []
    start.wait(_START_TIMEOUT)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    while not stop.is_set():
        try:
            conn.execute("BEGIN")
            total = conn.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
            negative = conn.execute("SELECT count(*) FROM accounts WHERE balance < 0").fetchone()[0]
            conn.execute("COMMIT")
            checks += 1
            sums.append(total if negative == 0 else -1)
        except sqlite3.Error as e:
            errors[str(e)] += 1
            _rollback_quietly(conn)
        time.sleep(0.002)
    conn.close()
    out.send((checks, dict(errors), sums))
    out.close()


def run_transfers(
    path: str,
    *,
    journal_mode: str,
    writers: int,
    transfers: int,
    readers: int = 2,
    accounts: int = 20,
    balance: int = 1000,
    busy_timeout: float = 0.0,
    time_limit: float = 600.0,
) -> TransferResult:
    """Transfers between random accounts with read-then-write transactions; readers check the total.

    A sum that a reader sees different from `accounts * balance` (or a negative balance, reported
    as -1) is a lost update or a torn read: `bad_sums` must stay empty.
    """
    expected = accounts * balance
    prepare_accounts(path, journal_mode, accounts, balance)
    stop = _CTX.Event()
    children = _Children()
    try:
        for wid in range(writers):
            children.spawn(_transferrer, path, busy_timeout, transfers, accounts, wid)
        for _ in range(readers):
            children.spawn(_sum_checker, path, busy_timeout, stop)
        t0 = time.perf_counter()
        children.start.set()
        deadline = time.monotonic() + time_limit
        writer_reports, crashed = children.collect(0, writers, deadline)
        elapsed = time.perf_counter() - t0
        stop.set()
        reader_reports, crashed_readers = children.collect(writers, writers + readers, deadline + 30)
    finally:
        children.kill_all()
    t_errors: Counter[str] = Counter()
    r_errors: Counter[str] = Counter()
    latencies: list[float] = []
    ok = checks = 0
    bad: list[int] = []
    for n, errs, lat in writer_reports:
        ok += n
        t_errors.update(errs)
        latencies.extend(lat)
    for n, errs, sums in reader_reports:
        checks += n
        r_errors.update(errs)
        bad.extend(int(s) for s in sums if s != expected)
    conn = sqlite3.connect(path, timeout=30)
    try:
        final_total = conn.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
        negative = conn.execute("SELECT count(*) FROM accounts WHERE balance < 0").fetchone()[0]
        integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()
    if negative:
        bad.append(-1)
    return TransferResult(
        ok,
        t_errors,
        checks,
        r_errors,
        bad,
        expected,
        final_total,
        integrity,
        elapsed,
        latencies,
        crashed + crashed_readers,
    )
