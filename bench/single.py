"""Single-process costs, no contention: what the mount adds to one client on its own.

- write: a small write transaction (one autocommit INSERT) on a kept connection;
- lookup: a point query by primary key in its own (autocommit) transaction;
- read 4 KiB: random pread() of 4 KiB blocks from a warm 32 MiB file (no SQLite involved).

Each figure is the median per operation; ratios are to native.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.targets import Target
from bench.workload import remove_database

FILE_SIZE = 32 * 1024 * 1024
BLOCK = 4096
LOOKUP_ROWS = 10_000


@dataclass(frozen=True)
class Measure:
    name: str  # what was measured
    median: float  # seconds per operation
    p99: float


def _timed(op: Callable[[int], object], n: int) -> tuple[float, float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        op(i)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def sqlite_measures(directory: str, journal_mode: str, n: int) -> list[Measure]:
    path = os.path.join(directory, f"single-{journal_mode}.db")
    remove_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA journal_mode={journal_mode}")
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t(v) VALUES (?)", [(f"value {i}",) for i in range(LOOKUP_ROWS)])
        conn.execute("COMMIT")
        write = _timed(lambda i: conn.execute("INSERT INTO t(v) VALUES (?)", (f"new {i}",)), n)
        ids = [random.randrange(1, LOOKUP_ROWS) for _ in range(n * 4)]
        lookup = _timed(lambda i: conn.execute("SELECT v FROM t WHERE id = ?", (ids[i],)).fetchone(), n * 4)
    finally:
        conn.close()
    remove_database(path)
    return [
        Measure(f"small write transaction ({journal_mode})", *write),
        Measure(f"point lookup in its own transaction ({journal_mode})", *lookup),
    ]


def read_measure(directory: str, n: int) -> Measure:
    path = os.path.join(directory, "reads.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(FILE_SIZE))
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, 1 << 20):  # warm the cache through this very layer
            pass
        offsets = [random.randrange(FILE_SIZE // BLOCK) * BLOCK for _ in range(n)]
        median, p99 = _timed(lambda i: os.pread(fd, BLOCK, offsets[i]), n)
    finally:
        os.close(fd)
        os.unlink(path)
    return Measure("4 KiB random read, warm file", median, p99)


def run(targets: dict[str, Target], quick: bool) -> dict[str, list[Measure]]:
    n = 200 if quick else 1000
    out: dict[str, list[Measure]] = {}
    for name, target in targets.items():
        d = str(target.directory)
        out[name] = [
            *sqlite_measures(d, "delete", n),
            *sqlite_measures(d, "wal", n),
            read_measure(d, n * 20),
        ]
    return out


def _us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:.1f}" if us < 100 else f"{us:.0f}"


def table(measures: dict[str, list[Measure]]) -> str:
    names = list(measures)
    others = [n for n in names if n != "native"]
    head = "| operation | " + " | ".join(f"{n} µs (p99)" for n in names)
    head += "".join(f" | {n} / native" for n in others) + " |"
    lines = [head, "|" + " --- |" * (1 + len(names) + len(others))]
    for i, m in enumerate(measures["native"]):
        cells = [m.name]
        row = {n: measures[n][i] for n in names}
        cells += [f"{_us(row[n].median)} ({_us(row[n].p99)})" for n in names]
        cells += [f"{row[n].median / m.median:.2f}x" for n in others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
