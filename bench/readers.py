"""Readers beside writers, on native disk and the mount(s), in one run, both journal modes.

1. Reader latency: one reader process on a kept connection makes point lookups
   (`SELECT v FROM t WHERE id = ?` on a table of 10,000 rows), each in its own autocommit read
   transaction, about 2 ms apart, for a fixed number of lookups (or until a time cap, since a
   native reader in rollback mode can starve beside writers): alone, beside 8 and beside 16
   writer processes that loop autocommit INSERTs on kept connections for the whole reader phase.
2. Writers beside an open reader: 8 writer processes, kept connections, N autocommit INSERTs each,
   without a reader and with a reader process that holds a read transaction open (a half-read
   `SELECT * FROM t`) for a few seconds, started just before the writers.

Every client uses busy timeout 5 s (native "careful" clients; the same on the mount). In rollback
(`delete`) mode an open reader holds every commit natively too: a commit needs EXCLUSIVE, which
waits for the reader's SHARED lock, so native writers stall (or fail once their 5 s run out).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import TypeVar

from bench.targets import Target
from bench.workload import (
    _CTX,
    JOURNAL_MODES,
    Latencies,
    WorkloadSpec,
    _Children,
    _rollback_quietly,
    _writer,
    check_database,
    prepare_database,
    tally,
)

ROWS = 10_000
BUSY_TIMEOUT = 5.0
GAP = 0.002  # between two lookups
RAMP = 0.3  # writers run this long before the reader starts
BESIDE = (0, 8, 16)  # writer processes beside the reader
HOLD_WRITERS = 8
# cap: the reader stops after this many seconds even if lookups are left: native readers in
# rollback mode can starve beside writers (seconds per lookup in SQLite's busy handler).
COUNTS = {
    "full": {"lookups": 200, "cap": 15.0, "inserts": 100, "hold": 5.0},
    "quick": {"lookups": 50, "cap": 3.0, "inserts": 20, "hold": 1.0},
}
_TIME_LIMIT = 300.0

R = TypeVar("R")


@dataclass(frozen=True)
class Counts:
    lookups: int  # timed lookups of the reader
    cap: float  # seconds after which the reader stops, lookups left or not
    inserts: int  # per writer, beside an open reader
    hold: float  # seconds the open reader holds its read transaction


def counts(quick: bool) -> Counts:
    c = COUNTS["quick" if quick else "full"]
    return Counts(int(c["lookups"]), c["cap"], int(c["inserts"]), c["hold"])


def prepare(path: str, journal_mode: str) -> None:
    """The workload's table (bench/workload.py) with ROWS rows, in the given journal mode."""
    prepare_database(path, journal_mode)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t(id, w, v) VALUES (?, -1, ?)", [(i, i) for i in range(1, ROWS + 1)])
        conn.execute("COMMIT")
    finally:
        conn.close()


def _integrity(path: str, committed: int) -> str:
    rows, integrity = check_database(path)
    expected = ROWS + committed
    if rows != expected or integrity != "ok":
        return f"MISMATCH: {rows} rows for {expected}, integrity {integrity}"
    return "ok"


# --- 1. reader latency ----------------------------------------------------------------------


@dataclass
class LatencyRun(Latencies):
    writers: int
    planned: int  # lookups the reader was to make
    latencies: list[float]  # seconds, one per successful lookup
    reader_errors: Counter[str]
    writer_ok: int
    writer_errors: Counter[str]
    writer_seconds: float  # how long the writers ran
    check: str  # "ok" or what is wrong (rows, integrity, crashed clients)

    @property
    def attempts(self) -> int:
        return len(self.latencies) + sum(self.reader_errors.values())

    @property
    def writer_tx_per_s(self) -> float:
        return self.writer_ok / self.writer_seconds if self.writer_seconds > 0 else 0.0


def _looping_writer(path: str, wid: int, stop: Event, start: Event, out: Connection) -> None:
    ok = 0
    errors: Counter[str] = Counter()
    start.wait(60)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    i = 0
    while not stop.is_set():
        try:
            conn.execute("INSERT INTO t(w, v) VALUES (?, ?)", (wid, i))
            ok += 1
        except sqlite3.Error as e:
            errors[str(e)] += 1
            _rollback_quietly(conn)
        i += 1
    conn.close()
    out.send((ok, dict(errors), []))
    out.close()


def _lookup_reader(
    path: str, lookups: int, cap: float, seed: int, read_only: bool, start: Event, out: Connection
) -> None:
    rng = random.Random(seed)
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    uri = f"file:{path}?mode=ro" if read_only else path
    conn = sqlite3.connect(uri, timeout=BUSY_TIMEOUT, isolation_level=None, uri=read_only)
    query = "SELECT v FROM t WHERE id = ?"
    conn.execute(query, (1,)).fetchall()  # the schema read, before the timed lookups
    start.wait(60)
    end = time.monotonic() + cap
    for _ in range(lookups):
        if time.monotonic() > end:
            break
        key = rng.randint(1, ROWS)
        t0 = time.perf_counter()
        try:
            # fetchall steps the statement to its end, so the read transaction ends here.
            conn.execute(query, (key,)).fetchall()
            latencies.append(time.perf_counter() - t0)
        except sqlite3.Error as e:
            errors[str(e)] += 1
        time.sleep(GAP)
    conn.close()
    out.send((len(latencies), dict(errors), latencies))
    out.close()


def run_latency(
    path: str, journal_mode: str, writers: int, lookups: int, cap: float, seed: int, read_only: bool = False
) -> LatencyRun:
    prepare(path, journal_mode)
    stop = _CTX.Event()
    writer_group, reader_group = _Children(), _Children()
    try:
        for wid in range(writers):
            writer_group.spawn(_looping_writer, path, wid, stop)
        reader_group.spawn(_lookup_reader, path, lookups, cap, seed, read_only)
        t0 = time.perf_counter()
        writer_group.start.set()
        if writers:
            time.sleep(RAMP)
        reader_group.start.set()
        deadline = time.monotonic() + _TIME_LIMIT
        reader_reports, reader_crashed = reader_group.collect(0, 1, deadline)
        stop.set()
        writer_seconds = time.perf_counter() - t0
        writer_reports, writer_crashed = writer_group.collect(0, writers, deadline + 30)
    finally:
        stop.set()
        writer_group.kill_all()
        reader_group.kill_all()
    _, reader_errors, latencies = tally(reader_reports)
    writer_ok, writer_errors, _ = tally(writer_reports)
    check = _integrity(path, writer_ok)
    if reader_crashed or writer_crashed:
        check += f"; {reader_crashed} reader and {writer_crashed} writers crashed"
    return LatencyRun(
        writers,
        lookups,
        latencies,
        reader_errors,
        writer_ok,
        writer_errors,
        writer_seconds if writers else 0.0,
        check,
    )


# --- 2. writers beside an open reader -------------------------------------------------------


@dataclass
class HoldRun:
    with_reader: bool
    ok: int
    errors: Counter[str]
    elapsed: float  # from the writers' release to the last writer's end
    max_latency: float  # the slowest committed INSERT, seconds
    reader_errors: Counter[str] = field(default_factory=Counter)
    check: str = "ok"

    @property
    def tx_per_s(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0


def _holding_reader(path: str, hold: float, holding: Event, start: Event, out: Connection) -> None:
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    start.wait(60)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    try:
        t0 = time.perf_counter()
        # A half-read cursor: the statement has not reached its end, so its read transaction
        # (SHARED in rollback mode, a WAL read mark in WAL mode) stays open while we sleep.
        cur = conn.execute("SELECT * FROM t")
        cur.fetchone()
        latencies.append(time.perf_counter() - t0)
        holding.set()
        time.sleep(hold)
        cur.close()
    except sqlite3.Error as e:
        errors[str(e)] += 1
    finally:
        holding.set()
        conn.close()
    out.send((len(latencies), dict(errors), latencies))
    out.close()


def run_hold(path: str, journal_mode: str, inserts: int, hold: float | None) -> HoldRun:
    """8 writers, `inserts` each; with `hold` seconds, beside a reader holding a read transaction."""
    prepare(path, journal_mode)
    spec = WorkloadSpec("keep", journal_mode, BUSY_TIMEOUT, HOLD_WRITERS, inserts)
    writer_group, reader_group = _Children(), _Children()
    holding = _CTX.Event()
    reader_errors: Counter[str] = Counter()
    try:
        for wid in range(HOLD_WRITERS):
            writer_group.spawn(_writer, path, spec, wid)
        if hold is not None:
            reader_group.spawn(_holding_reader, path, hold, holding)
            reader_group.start.set()
            if not holding.wait(30):
                reader_errors["did not get its first row in 30 s"] += 1
        t0 = time.perf_counter()
        writer_group.start.set()
        deadline = time.monotonic() + _TIME_LIMIT
        reports, crashed = writer_group.collect(0, HOLD_WRITERS, deadline)
        elapsed = time.perf_counter() - t0
        reader_reports, reader_crashed = (
            reader_group.collect(0, 1, deadline + 30) if hold is not None else ([], 0)
        )
    finally:
        writer_group.kill_all()
        reader_group.kill_all()
    ok, errors, latencies = tally(reports)
    reader_errors.update(tally(reader_reports)[1])
    check = _integrity(path, ok)
    if crashed or reader_crashed:
        check += f"; {crashed} writers and {reader_crashed} reader crashed"
    return HoldRun(hold is not None, ok, errors, elapsed, max(latencies, default=0.0), reader_errors, check)


# --- running and the tables -----------------------------------------------------------------


@dataclass
class Results:
    counts: Counts
    # (mode, writers, target, reader opened read-only)
    latency: dict[tuple[str, int, str, bool], LatencyRun] = field(default_factory=dict)
    hold: dict[tuple[str, bool, str], HoldRun] = field(default_factory=dict)  # (mode, with reader, target)


def _median(runs: list[R], key: Callable[[R], float]) -> R:
    return sorted(runs, key=key)[len(runs) // 2]


def run(
    targets: dict[str, Target], quick: bool, repeat: int = 1, progress: Callable[[str], None] | None = None
) -> Results:
    """Every case `repeat` times on every target, interleaved; each target keeps its median run
    (by the reader's p50, by the writers' tx/s), whole, with its own errors."""
    c = counts(quick)
    results = Results(c)
    cases: list[tuple[str, str, int | bool]] = [
        *(("latency", mode, w) for mode in JOURNAL_MODES for w in BESIDE),
        *(("latency-ro", mode, w) for mode in JOURNAL_MODES for w in BESIDE),
        *(("hold", mode, r) for mode in JOURNAL_MODES for r in (False, True)),
    ]
    for i, (kind, mode, arg) in enumerate(cases, 1):
        label = f"{kind} {mode} " + (
            f"beside {arg} writers" if kind != "hold" else ("with reader" if arg else "no reader")
        )
        if progress is not None:
            progress(f"[{i}/{len(cases)}] {label}")
        latency_runs: dict[str, list[LatencyRun]] = {}
        hold_runs: dict[str, list[HoldRun]] = {}
        for r in range(repeat):
            for name, target in targets.items():
                path = str(target.directory / f"readers-{mode}.db")
                if kind != "hold":
                    run_ = run_latency(path, mode, int(arg), c.lookups, c.cap, r, kind == "latency-ro")
                    latency_runs.setdefault(name, []).append(run_)
                else:
                    hold_run = run_hold(path, mode, c.inserts, c.hold if arg else None)
                    hold_runs.setdefault(name, []).append(hold_run)
        for name, lruns in latency_runs.items():
            results.latency[(mode, int(arg), name, kind == "latency-ro")] = _median(lruns, lambda x: x.p50)
        for name, hruns in hold_runs.items():
            results.hold[(mode, bool(arg), name)] = _median(hruns, lambda x: x.tx_per_s)
    return results


def _errors(errors: Counter[str], check: str = "ok") -> str:
    text = str(sum(errors.values())) if errors else "0"
    if check != "ok":
        text += f" {check}"
    return text


def _ms(r: LatencyRun | None) -> str:
    if r is None or not r.latencies:
        return "-"
    text = f"{r.p50 * 1e3:.2f} / {r.p99 * 1e3:.1f}"
    if r.attempts < r.planned:  # the reader ran out of time
        text += f" ({r.attempts} of {r.planned} lookups)"
    return text


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 and a == a and b == b else "-"


def _ratios(a: LatencyRun | None, b: LatencyRun | None) -> str:
    if a is None or b is None or not a.latencies or not b.latencies:
        return "-"
    return f"{_ratio(a.p50, b.p50)} / {_ratio(a.p99, b.p99)}"


def _writers(r: LatencyRun | None) -> str:
    if r is None or not r.writers:
        return "-"
    return f"{r.writer_tx_per_s:.0f}, {_errors(r.writer_errors)}"


def latency_table(results: Results, names: list[str]) -> str:
    mounts = [n for n in names if n != "native"]
    head = ["case", "mode", "native p50 / p99 ms"]
    for m in mounts:
        head += [f"{m} p50 / p99 ms", f"{m} beside / alone", f"{m} / native"]
    head += ["reader errors " + " / ".join(names)]
    head += [f"{n} writers tx/s, errors" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for ro, mode, w in ((ro, mode, w) for ro in (False, True) for mode in JOURNAL_MODES for w in BESIDE):
        row = {n: results.latency.get((mode, w, n, ro)) for n in names}
        who = "read-only reader" if ro else "reader"
        case = f"{who} alone" if w == 0 else f"{who} beside {w} writers"
        cells = [case, mode, _ms(row["native"])]
        for m in mounts:
            alone = results.latency.get((mode, 0, m, ro))
            beside = "-" if w == 0 else _ratios(row[m], alone)
            cells += [_ms(row[m]), beside, _ratios(row[m], row["native"])]
        errs = []
        for n in names:
            r = row[n]
            errs.append("-" if r is None else _errors(r.reader_errors, r.check))
        cells.append(" / ".join(errs))
        cells += [_writers(row[n]) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _tps(r: HoldRun | None) -> str:
    return "-" if r is None else f"{r.tx_per_s:.0f}"


def _hold_errors(r: HoldRun | None) -> str:
    if r is None:
        return "-"
    text = _errors(r.errors, r.check)
    if r.errors:
        text += f"/{r.ok + sum(r.errors.values())}"
    if r.reader_errors:
        text += f" (reader: {', '.join(f'{k} x{v}' for k, v in r.reader_errors.items())})"
    return text


def hold_table(results: Results, names: list[str]) -> str:
    mounts = [n for n in names if n != "native"]
    head = ["case", "mode"]
    for n in names:
        head += [f"{n} tx/s", f"{n} errors", f"{n} slowest ms", f"{n} with / without reader"]
    head += [f"{m} / native" for m in mounts]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    hold = results.counts.hold
    for mode in JOURNAL_MODES:
        for with_reader in (False, True):
            case = f"{HOLD_WRITERS} writers x{results.counts.inserts}"
            if with_reader:
                case += f", reader open {hold:g} s"
            cells = [case, mode]
            for n in names:
                r = results.hold.get((mode, with_reader, n))
                base = results.hold.get((mode, False, n))
                ratio = "-"
                if with_reader and r is not None and base is not None:
                    ratio = _ratio(r.tx_per_s, base.tx_per_s)
                slowest = "-" if r is None else f"{r.max_latency * 1e3:.0f}"
                cells += [_tps(r), _hold_errors(r), slowest, ratio]
            native = results.hold.get((mode, with_reader, "native"))
            for m in mounts:
                r = results.hold.get((mode, with_reader, m))
                cells.append("-" if r is None or native is None else _ratio(r.tx_per_s, native.tx_per_s))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def error_notes(results: Results) -> str:
    """Every distinct error message, per target, so that a count in a table has its cause."""
    seen: dict[str, Counter[str]] = {}
    for (_, _, name, _), lrun in results.latency.items():
        seen.setdefault(f"{name} reader", Counter()).update(lrun.reader_errors)
        seen.setdefault(f"{name} writers beside it", Counter()).update(lrun.writer_errors)
    for (_, _, name), hrun in results.hold.items():
        seen.setdefault(f"{name} writers (open-reader cases)", Counter()).update(hrun.errors)
        seen.setdefault(f"{name} open reader", Counter()).update(hrun.reader_errors)
    lines = [
        f"- {who}: " + ", ".join(f"{msg!r} x{n}" for msg, n in errs.most_common())
        for who, errs in seen.items()
        if errs
    ]
    return "\n".join(lines) if lines else "No client got an error."
