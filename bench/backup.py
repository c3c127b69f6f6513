"""Continuous backup's cost to writers: tx/s with replication off and on, native and mount, one run.

Four targets side by side: native without Litestream, native with `litestream replicate` run by
hand (bench/litestream.py's `replicating`), the mount without a replica, and the mount with
`--replica` (Litestream run by the daemon, reading through the mount). 16 writer processes, busy
timeout 5 s, WAL. While the mount with a replica runs, its backup status is sampled every
SAMPLE_S: the lag's p50/p99 (the daemon measures it at its poll's resolution, a second). Each
replica must then restore to exactly the rows committed, integrity_check ok: the run fails
otherwise.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.litestream import caught_up, replica_problems, replicating
from bench.targets import Target
from bench.workload import WorkloadResult, WorkloadSpec, check_database, prepare_database, run_workload
from hoodydb import control_client
from hoodydb.backup.restore import RestoreError, restore

WRITERS = 16
COUNTS = {"full": 150, "quick": 30}  # transactions per writer
PATTERNS = ("keep", "txn")
BUSY_TIMEOUT_S = 5.0
SAMPLE_S = 0.25
CATCH_UP_S = 60.0


@dataclass
class Cell:
    target: str
    pattern: str
    replicated: bool
    result: WorkloadResult
    rows: int
    integrity: str
    restored: tuple[int, str] | None
    lags: list[float] = field(default_factory=list)

    def broken(self) -> list[str]:
        where = f"{self.target} {self.pattern} {'on' if self.replicated else 'off'}"
        return replica_problems(where, self.result.ok, self.rows, self.integrity, self.restored)


def _lag_sampler(mountpoint: Path, name: str, lags: list[float], stop: threading.Event) -> None:
    while not stop.wait(SAMPLE_S):
        try:
            report = control_client.query(control_client.socket_path(mountpoint))["backup"]
        except OSError:
            continue
        for db in report["databases"]:
            if db["database"] == name and "lag_seconds" in db:
                lags.append(float(db["lag_seconds"]))


def _restored(replica: str, name: str, out: Path, rows: int) -> tuple[int, str]:
    """`hoodydb restore` until the replica holds `rows` rows or CATCH_UP_S pass."""
    deadline = time.monotonic() + CATCH_UP_S
    got = (0, "nothing restored")
    while time.monotonic() < deadline:
        out.unlink(missing_ok=True)
        try:
            restore(replica=replica, name=name, output=out)
            got = check_database(str(out))
        except RestoreError as exc:
            got = (0, str(exc))
        if got[0] >= rows:
            break
        time.sleep(0.5)
    return got


def run_cell(target: Target, pattern: str, replica: str | None, native_litestream: bool, txs: int) -> Cell:
    name = f"bk-{pattern}-{int(bool(replica or native_litestream))}.db"
    db = target.directory / name
    spec = WorkloadSpec(pattern, "wal", BUSY_TIMEOUT_S, WRITERS, txs)
    prepare_database(str(db), "wal")
    restored, lags = None, []
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        work = Path(tmp)
        if native_litestream:
            with replicating(db, work / "replica", work) as config:
                result = run_workload(str(db), spec, prepare=False)
                rows, integrity = check_database(str(db))
                restored = caught_up(config, db, work / "restored.db", rows)
        else:
            stop = threading.Event()
            sampler = None
            if replica:
                sampler = threading.Thread(target=_lag_sampler, args=(target.directory, name, lags, stop))
                sampler.start()
            try:
                result = run_workload(str(db), spec, prepare=False)
            finally:
                stop.set()
                if sampler is not None:
                    sampler.join()
            rows, integrity = check_database(str(db))
            if replica:
                restored = _restored(replica, name, work / "restored.db", rows)
    on = bool(replica or native_litestream)
    return Cell(target.name, pattern, on, result, rows, integrity, restored, lags)


def run(
    targets: dict[str, Target], replicas: dict[str, str], quick: bool, progress: Callable[[str], None]
) -> list[Cell]:
    """`targets`: native, and the mounts; `replicas`: the replica URL of each mount that has one."""
    txs = COUNTS["quick" if quick else "full"]
    cells = []
    for pattern in PATTERNS:
        for target in targets.values():
            replica = replicas.get(target.name)
            for native_on in (False, True) if target.name == "native" else (False,):
                on = replica is not None or native_on
                progress(f"{target.name} {pattern} replication {'on' if on else 'off'}")
                cells.append(run_cell(target, pattern, replica, native_on, txs))
    return cells


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(cells: list[Cell], off_name: str) -> str:
    """Each pattern: native off/on, the mount off (`off_name`) and on, ratios against the same
    family's 'off'."""
    lines = [
        "| writers | target | replication | tx/s | vs off | errors | lag p50 / p99 | replica restored |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for pattern in PATTERNS:
        row = [c for c in cells if c.pattern == pattern]
        native_off = next(c for c in row if c.target == "native" and not c.replicated)
        mount_off = next(c for c in row if c.target == off_name)
        for c in row:
            base = native_off if c.target == "native" else mount_off
            ratio = c.result.tx_per_s / base.result.tx_per_s if base.result.tx_per_s else 0.0
            lag = f"{_pct(c.lags, 0.5):.1f} s / {_pct(c.lags, 0.99):.1f} s" if c.lags else "-"
            restored = "-" if c.restored is None else f"{c.restored[0]} rows, {c.restored[1]}"
            lines.append(
                f"| {WRITERS} x {c.result.spec.transactions} {pattern} | {c.target} | "
                f"{'on' if c.replicated else 'off'} | {c.result.tx_per_s:.0f} | {ratio:.2f}x | "
                f"{sum(c.result.errors.values())} | {lag} | {restored} |"
            )
    return "\n".join(lines)


def lag_summary(cells: list[Cell]) -> str:
    lags = [x for c in cells for x in c.lags]
    if not lags:
        return "No lag samples."
    return (
        f"Lag over {len(lags)} samples of the mount's backup status: median {statistics.median(lags):.2f} s, "
        f"p99 {_pct(lags, 0.99):.2f} s, max {max(lags):.2f} s."
    )


def failures(cells: list[Cell]) -> list[str]:
    return [line for c in cells for line in c.broken()]
