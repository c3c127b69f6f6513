"""A web application's workers: N processes, each with one read-write connection for the whole run.

Each worker (a web worker's request loop) keeps ONE `sqlite3` connection open, autocommit, and
for a fixed time picks at random per operation: 90 % point reads (`SELECT v FROM t WHERE id = ?`
on a table of 10,000 rows) and 10 % one-row writes (`UPDATE t SET v = v + 1 WHERE id = ?`),
with a think time of 1 ms between operations. The same workers with 100 % reads ("alone") give
each target's read latency without writers, so the table can show what the writers cost a read.

Both journal modes (WAL first: the case that matters), busy timeout 0 and 5 s, native disk and
the mount(s) in one run. After every run: successful updates == sum over rows of (v - initial
v), row count unchanged, `PRAGMA integrity_check` ok; `failures()` lists the runs that broke it.
"""

from __future__ import annotations

import contextlib
import functools
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

from bench.readers import ROWS, _median, _ratio, prepare
from bench.targets import Target
from bench.workload import (
    _START_TIMEOUT,
    Latencies,
    _Children,
    _rollback_quietly,
    check_database,
    tally,
)
from hoodydb import control_client

MODES = ("wal", "delete")
BUSY_TIMEOUTS = (0.0, 5.0)
WRITE_SHARE = 0.1  # of the operations in the mix
THINK = 0.001  # seconds between two operations of a worker
READ = "SELECT v FROM t WHERE id = ?"
WRITE = "UPDATE t SET v = v + 1 WHERE id = ?"
_TIME_LIMIT = 120.0  # beyond the run's duration, for a worker to report


@dataclass(frozen=True)
class Counts:
    workers: int
    seconds: float  # each run's duration


def counts(quick: bool) -> Counts:
    return Counts(8, 1.5 if quick else 5.0)


@dataclass
class Run(Latencies):
    journal_mode: str
    busy_timeout: float
    write_share: float  # 0 for the reads-only ("alone") run
    updates: int  # successful UPDATEs
    latencies: list[float]  # seconds, one per successful read
    read_errors: Counter[str]
    write_errors: Counter[str]
    elapsed: float  # from the workers' release to the last report
    check: str  # "ok" or what is wrong
    turn_busy: float | None = None  # share of `elapsed` the mount's turn on the database was held

    @property
    def writes_per_s(self) -> float:
        return self.updates / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def reads_per_s(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed > 0 else 0.0


def _worker(
    path: str,
    busy_timeout: float,
    write_share: float,
    seconds: float,
    seed: int,
    start: Event,
    out: Connection,
) -> None:
    """Reports (successful updates, errors keyed "read: ..." / "write: ...", read latencies)."""
    rng = random.Random(seed)
    updates = 0
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    # The schema read, before the timed loop. A worker that starts late can meet the others'
    # writes here; at busy timeout 0 that is "database is locked", and its first timed read will
    # read the schema instead.
    with contextlib.suppress(sqlite3.Error):
        conn.execute(READ, (1,)).fetchall()
    start.wait(_START_TIMEOUT)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        key = rng.randint(1, ROWS)
        write = rng.random() < write_share
        t0 = time.perf_counter()
        try:
            if write:
                changed = conn.execute(WRITE, (key,)).rowcount
                if changed == 1:
                    updates += 1
                else:
                    errors[f"write: changed {changed} rows"] += 1
            else:
                # fetchall steps the statement to its end, so the read transaction ends here.
                conn.execute(READ, (key,)).fetchall()
                latencies.append(time.perf_counter() - t0)
        except sqlite3.Error as e:
            errors[f"{'write' if write else 'read'}: {e}"] += 1
            _rollback_quietly(conn)
        time.sleep(THINK)
    conn.close()
    out.send((updates, dict(errors), latencies))
    out.close()


def check(path: str, updates: int) -> str:
    """'ok' if the database holds exactly `updates` increments over its initial values, else why not."""
    rows, integrity = check_database(path)
    conn = sqlite3.connect(path, timeout=30)
    try:
        drift = conn.execute("SELECT coalesce(sum(v - id), 0) FROM t").fetchone()[0]  # prepare: v = id
    finally:
        conn.close()
    problems = []
    if drift != updates:
        problems.append(f"sum of v - initial v is {drift} for {updates} successful updates")
    if rows != ROWS:
        problems.append(f"{rows} rows for {ROWS}")
    if integrity != "ok":
        problems.append(f"integrity_check: {integrity}")
    return "; ".join(problems) or "ok"


def turn_seconds(mountpoint: Path, name: str) -> float | None:
    """How long a mount's turn on the database `name` ("/x.db") has been held, over every file
    of that name (`hoodydb locks --json`), or None if the mount has no control socket."""
    try:
        report = control_client.query(control_client.socket_path(mountpoint))
    except OSError:
        return None
    return sum(d["counters"]["turn_seconds"] for d in report["databases"] if d["database"] == name)


def run_one(
    path: str,
    journal_mode: str,
    busy_timeout: float,
    write_share: float,
    c: Counts,
    seed: int = 0,
    turn: Callable[[], float | None] | None = None,
) -> Run:
    """One run of `c.workers` workers on a fresh database at `path`, checked afterwards.
    `turn`: how long the database's turn has been held so far, if it has one (a mount)."""
    prepare(path, journal_mode)
    children = _Children()
    try:
        for wid in range(c.workers):
            children.spawn(_worker, path, busy_timeout, write_share, c.seconds, seed * 1000 + wid)
        turn_before = turn() if turn is not None else None
        t0 = time.perf_counter()
        children.start.set()
        reports, crashed = children.collect(0, c.workers, time.monotonic() + c.seconds + _TIME_LIMIT)
        elapsed = time.perf_counter() - t0
        turn_after = turn() if turn is not None else None
    finally:
        children.kill_all()
    updates, errors, latencies = tally(reports)
    read_errors = Counter({k.removeprefix("read: "): n for k, n in errors.items() if k.startswith("read: ")})
    write_errors = Counter(
        {k.removeprefix("write: "): n for k, n in errors.items() if k.startswith("write: ")}
    )
    result = check(path, updates)
    if crashed:  # their updates went unreported: the sum cannot match, say why
        result = f"{crashed} workers crashed; {result}"
    return Run(
        journal_mode,
        busy_timeout,
        write_share,
        updates,
        latencies,
        read_errors,
        write_errors,
        elapsed,
        result,
        None if turn_before is None or turn_after is None else (turn_after - turn_before) / elapsed,
    )


# (journal mode, busy timeout, target) -> (mix run, alone run)
Results = dict[tuple[str, float, str], tuple[Run, Run]]


def run(
    targets: dict[str, Target], c: Counts, repeat: int = 1, progress: Callable[[str], None] | None = None
) -> Results:
    """Every cell `repeat` times on every target, interleaved; each keeps its median run (the mix
    by writes/s, alone by read p50), whole, with its own errors and check."""
    results: Results = {}
    cells = [(mode, bt) for mode in MODES for bt in BUSY_TIMEOUTS]
    for i, (mode, bt) in enumerate(cells, 1):
        if progress is not None:
            progress(f"[{i}/{len(cells)}] {mode}, busy timeout {bt:g} s")
        runs: dict[tuple[str, float], list[Run]] = {}
        for r in range(repeat):
            for share in (WRITE_SHARE, 0.0):
                for name, target in targets.items():
                    filename = f"webapp-{mode}.db"
                    turn = None
                    if target.daemon_pid is not None:
                        turn = functools.partial(turn_seconds, target.directory, "/" + filename)
                    path = str(target.directory / filename)
                    runs.setdefault((name, share), []).append(run_one(path, mode, bt, share, c, r, turn))
        for name in targets:
            mix = _median(runs[(name, WRITE_SHARE)], lambda x: x.writes_per_s)
            alone = _median(runs[(name, 0.0)], lambda x: x.p50)
            results[(mode, bt, name)] = (mix, alone)
    return results


def _ms(r: Run) -> str:
    return f"{r.p50 * 1e3:.3f} / {r.p99 * 1e3:.2f}" if r.latencies else "-"


def _share(busy: float | None) -> str:
    return "-" if busy is None else f"{busy:.0%}"


def _count(errors: Counter[str], done: int) -> str:
    n = sum(errors.values())
    return f"{n}/{n + done}" if n else "0"


def table(results: Results) -> str:
    head = [
        "mode",
        "busy timeout",
        "target",
        "reads/s",
        "read p50 / p99 ms",
        "alone p50 / p99 ms",
        "mix / alone p50",
        "read p50 vs native",
        "writes/s",
        "writes vs native",
        "write errors",
        "read errors (alone)",
        "turn held (alone)",
        "updates = sum, integrity",
    ]
    lines = ["| " + " | ".join(head) + " |", "| --- | ---: | --- |" + " ---: |" * (len(head) - 4) + " --- |"]
    for (mode, bt, name), (mix, alone) in results.items():
        native = results.get((mode, bt, "native"))
        p50_vs = writes_vs = "-"
        if native is not None and mix.latencies and native[0].latencies:
            p50_vs = _ratio(mix.p50, native[0].p50)
        if native is not None:
            writes_vs = _ratio(mix.writes_per_s, native[0].writes_per_s)
        read_errors = _count(mix.read_errors, len(mix.latencies))
        read_errors += f" ({_count(alone.read_errors, len(alone.latencies))})"
        checks = mix.check if alone.check == "ok" else f"{mix.check}; alone: {alone.check}"
        cells = [
            mode,
            f"{bt:g} s",
            name,
            f"{mix.reads_per_s:.0f}",
            _ms(mix),
            _ms(alone),
            _ratio(mix.p50, alone.p50) if mix.latencies and alone.latencies else "-",
            p50_vs,
            f"{mix.writes_per_s:.0f}",
            writes_vs,
            _count(mix.write_errors, mix.updates),
            read_errors,
            f"{_share(mix.turn_busy)} ({_share(alone.turn_busy)})",
            checks,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def error_notes(results: Results) -> str:
    """Every distinct error message, per target and cell, so that a count in the table has its cause."""
    lines = []
    for (mode, bt, name), (mix, alone) in results.items():
        for who, errs in (
            ("writes", mix.write_errors),
            ("reads", mix.read_errors),
            ("alone", alone.read_errors),
        ):
            if errs:
                text = ", ".join(f"{msg!r} x{n}" for msg, n in errs.most_common())
                lines.append(f"- {name}, {mode}, busy timeout {bt:g} s, {who}: {text}")
    return "\n".join(lines) if lines else "No client got an error."


def failures(results: Results) -> list[str]:
    """The runs whose check failed: lost or phantom updates, rows, integrity, crashed workers."""
    return [
        f"{name}, {mode}, busy timeout {bt:g} s, {'mix' if r is mix else 'alone'}: {r.check}"
        for (mode, bt, name), (mix, alone) in results.items()
        for r in (mix, alone)
        if r.check != "ok"
    ]
