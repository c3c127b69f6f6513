"""What the commit feed costs the writers: tx/s with the feed on, off, and followed.

Targets in one run, on one disk: native; a mount with `--no-commit-feed`; a mount with the feed
on (the default) and nobody watching; the same mount while `WATCHERS` clients follow it over the
control socket (as `hoodydb watch` does), each receiving every event. Workloads: autocommit
INSERTs on kept connections ("keep"), one writer and four, WAL and rollback journal. The cells are
run `repeat` times, interleaved across targets, and the median kept: the machine is shared.
Every run checks that each commit landed and, when watched, that every watcher saw each one.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.targets import Target, daemon_usage
from bench.workload import WorkloadSpec, run_workload
from hoodydb import control_client
from hoodydb.fs.commits import CommitWatch
from hoodydb.fs.feed import CommitFeed
from hoodydb.locks import FileRole

WATCHERS = 10
BUSY_TIMEOUT = 5.0
NATIVE, OFF, ON, WATCHED = "native", "feed off", "feed on", f"feed on, {WATCHERS} watchers"
COLUMNS = (NATIVE, OFF, ON, WATCHED)


@dataclass
class Cell:
    spec: WorkloadSpec
    tx_per_s: dict[str, list[float]] = field(default_factory=dict)
    # The mount daemon's CPU time per transaction: steadier than tx/s on a shared machine.
    cpu_us: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    native_errors: list[str] = field(default_factory=list)

    def median(self, column: str) -> float:
        return statistics.median(self.tx_per_s[column])

    def cpu(self, column: str) -> float:
        return statistics.median(self.cpu_us[column])


def cells(quick: bool) -> list[WorkloadSpec]:
    n = 300 if quick else 2000
    return [
        WorkloadSpec("keep", mode, BUSY_TIMEOUT, writers, n // writers)
        for mode in ("wal", "delete")
        for writers in (1, 4)
    ]


@contextmanager
def watchers(target: Target, count: int) -> Iterator[list[int]]:
    """`count` clients following the whole feed; yields their event counts (commits seen)."""
    seen = [0] * count
    stop = threading.Event()
    started = threading.Barrier(count + 1)

    def follow(i: int) -> None:
        events = control_client.watch(control_client.socket_path(target.directory), "*", heartbeat=0.5)
        for event in events:
            if event["type"] == "start":
                started.wait()
            elif event["type"] == "commit":
                seen[i] += 1
            if stop.is_set():
                return

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    started.wait(30)
    try:
        yield seen
    finally:
        stop.set()
        for t in threads:
            t.join(5)


def _run_one(cell: Cell, column: str, target: Target, label: str) -> None:
    path = os.path.join(target.directory, f"{label}.db")
    cpu0 = daemon_usage(target.daemon_pid).cpu_seconds if target.daemon_pid else 0.0
    if column == WATCHED:
        with watchers(target, WATCHERS) as seen:
            result = run_workload(path, cell.spec)
            commits = result.ok + 2  # and the table's creation, and the journal mode's switch
            deadline = threading.Event()
            for _ in range(100):  # the last events are on their way: up to 5 s
                if min(seen) >= result.ok:
                    break
                deadline.wait(0.05)
            if min(seen) < result.ok or max(seen) > commits:
                cell.failures.append(f"{label}: watchers saw {sorted(set(seen))} of {result.ok} commits")
    else:
        result = run_workload(path, cell.spec)
    if target.daemon_pid and result.ok:
        cpu = daemon_usage(target.daemon_pid).cpu_seconds - cpu0
        cell.cpu_us.setdefault(column, []).append(cpu / result.ok * 1e6)
    if result.ok != cell.spec.expected or result.rows != cell.spec.expected or result.integrity != "ok":
        # Natively a busy timeout can still end in "database is locked": SQLite's way, not a fault.
        (cell.native_errors if column == NATIVE else cell.failures).append(f"{label}: {result.summary()}")
    cell.tx_per_s.setdefault(column, []).append(result.tx_per_s)


def run(targets: dict[str, Target], quick: bool, repeat: int, say: Callable[[str], None]) -> list[Cell]:
    """`targets`: native, the mount with the feed off and the one with it on (names as COLUMNS)."""
    out = [Cell(spec) for spec in cells(quick)]
    for r in range(repeat):
        for cell in out:
            say(f"[{r + 1}/{repeat}] {cell.spec.label()}")
            for column in COLUMNS:
                target = targets[ON if column == WATCHED else column]
                label = f"{cell.spec.label()}-{r}-{column.replace(' ', '_').replace(',', '')}"
                _run_one(cell, column, target, label)
    return out


def _workload(spec: WorkloadSpec) -> str:
    return f"{spec.writers} writer{'s' if spec.writers > 1 else ''}, {spec.journal_mode}"


def cpu_table(results: list[Cell]) -> str:
    mounts = COLUMNS[1:]
    head = "| workload | " + " | ".join(f"{c} µs" for c in mounts) + " | on - off µs | watched - off µs |"
    lines = [head, "|" + " --- |" * (1 + len(mounts) + 2)]
    for cell in results:
        m = {c: cell.cpu(c) for c in mounts}
        lines.append(
            f"| {_workload(cell.spec)} | "
            + " | ".join(f"{m[c]:.0f}" for c in mounts)
            + f" | {m[ON] - m[OFF]:+.0f} | {m[WATCHED] - m[OFF]:+.0f} |"
        )
    return "\n".join(lines)


def native_notes(results: list[Cell]) -> str:
    errors = [e for cell in results for e in cell.native_errors]
    return "\n".join(f"Native, not counted as a failure: {e}" for e in errors)


def table(results: list[Cell]) -> str:
    head = "| workload | " + " | ".join(f"{c} tx/s" for c in COLUMNS)
    head += " | on / off | watched / off | off / native |"
    lines = [head, "|" + " --- |" * (1 + len(COLUMNS) + 3)]
    for cell in results:
        m = {c: cell.median(c) for c in COLUMNS}
        lines.append(
            f"| {_workload(cell.spec)}, {cell.spec.expected} INSERTs | "
            + " | ".join(f"{m[c]:.0f}" for c in COLUMNS)
            + f" | {m[ON] / m[OFF]:.3f} | {m[WATCHED] / m[OFF]:.3f} | {m[OFF] / m[NATIVE]:.2f} |"
        )
    return "\n".join(lines)


def failures(results: list[Cell]) -> list[str]:
    return [f for cell in results for f in cell.failures]


def hooks_cost(transactions: int = 5000) -> tuple[float, float]:
    """The feed's own work per WAL transaction, in this process (no FUSE, no SQLite): two frames
    written and six unlocks, with and without `CommitWatch`'s hooks. (µs plain, µs with hooks)"""
    page_size = 4096
    with tempfile.TemporaryDirectory(prefix="hoodydb-feed-hooks-") as tmp:
        root = Path(tmp)
        watch = CommitWatch(tmp, CommitFeed(root / ".hoodydb", root=root))
        me = os.getpid()
        fds = {
            name: os.open(root / name, os.O_RDWR | os.O_CREAT) for name in ("x.db", "x.db-wal", "x.db-shm")
        }
        watch.opened(fds["x.db"], "/x.db", FileRole.DATABASE, me)
        watch.opened(fds["x.db-wal"], "/x.db-wal", FileRole.OTHER, me)
        watch.opened(fds["x.db-shm"], "/x.db-shm", FileRole.SHM, me)
        wal, shm, page = fds["x.db-wal"], fds["x.db-shm"], bytes(page_size)
        header = bytearray(32)
        header[8:12] = page_size.to_bytes(4, "big")

        def run(hooks: bool) -> float:
            os.ftruncate(wal, 0)
            os.pwrite(wal, header, 0)
            if hooks:
                watch.wrote(wal, bytes(header), 0, lambda: me)
            t0 = time.perf_counter()
            for i in range(transactions):
                for j, size in ((2 * i, 0), (2 * i + 1, 7)):  # the second frame commits
                    offset = 32 + j * (24 + page_size)
                    frame = (j + 1).to_bytes(4, "big") + size.to_bytes(4, "big") + bytes(16)
                    os.pwrite(wal, frame, offset)
                    if hooks:
                        watch.wrote(wal, frame, offset, lambda: me)
                    os.pwrite(wal, page, offset + 24)
                    if hooks:
                        watch.wrote(wal, page, offset + 24, lambda: me)
                for _ in range(6):
                    if hooks and watch.pending:
                        watch.unlocked(shm, me)
            return (time.perf_counter() - t0) / transactions * 1e6

        runs = [(run(False), run(True)) for _ in range(3)]
        for fd in fds.values():
            os.close(fd)
    return min(r[0] for r in runs), min(r[1] for r in runs)
