"""The contention matrix (bench/workload.py) on native disk, the mount and passthrough_fh, in one run.

Every cell runs the same workload on each target with a fresh database. "tx/s" counts committed
transactions only (goodput): a native cell with errors commits fewer rows in less time. The fair
throughput baseline is native with busy timeout 5 s ("careful clients"), whatever the cell's
own busy timeout, because that is what a client must do on native disk to avoid most errors.
passthrough_fh (kernel-side locks, no gate) runs the busy-timeout-5 cells only: with 0 it fails
like native.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from bench.targets import Target, daemon_usage
from bench.workload import JOURNAL_MODES, PATTERNS, WorkloadResult, WorkloadSpec, run_workload

WRITERS = (1, 16, 64)
BUSY_TIMEOUTS = (0, 5)
TRANSACTIONS = {"full": {1: 400, 16: 50, 64: 12}, "quick": {1: 100, 16: 12, 64: 4}}


@dataclass
class Cell:
    spec: WorkloadSpec
    results: dict[str, WorkloadResult] = field(default_factory=dict)
    daemon_cpu: float | None = None  # seconds of mount daemon CPU during the mount run


def cells(quick: bool) -> list[WorkloadSpec]:
    per_writer = TRANSACTIONS["quick" if quick else "full"]
    return [
        WorkloadSpec(pattern, mode, bt, writers, per_writer[writers])
        for pattern, mode, bt, writers in itertools.product(PATTERNS, JOURNAL_MODES, BUSY_TIMEOUTS, WRITERS)
    ]


def run_cell(spec: WorkloadSpec, targets: dict[str, Target], repeat: int = 1) -> Cell:
    """Run the cell `repeat` times on every target, interleaved, and keep each target's median run.

    Interleaving spreads the VM's slow spells over all targets alike; the median run (by tx/s)
    keeps its own errors, latencies and daemon CPU, so a row stays one real run.
    """
    runs: dict[str, list[tuple[WorkloadResult, float | None]]] = {}
    for _ in range(repeat):
        for name, target in targets.items():
            if name == "passthrough_fh" and spec.busy_timeout == 0:
                continue
            pid = target.daemon_pid if name == "mount" else None
            before = daemon_usage(pid).cpu_seconds if pid else None
            result = run_workload(str(target.directory / f"{spec.label()}.db"), spec)
            cpu = daemon_usage(pid).cpu_seconds - before if pid and before is not None else None
            runs.setdefault(name, []).append((result, cpu))
    cell = Cell(spec)
    for name, results in runs.items():
        results.sort(key=lambda run: run[0].tx_per_s)
        result, cpu = results[len(results) // 2]
        cell.results[name] = result
        if name == "mount":
            cell.daemon_cpu = cpu
    return cell


def _ratio(a: WorkloadResult | None, b: WorkloadResult | None) -> str:
    if a is None or b is None or b.tx_per_s == 0:
        return "-"
    # A baseline that failed transactions commits fewer, faster: mark its ratio as not like for like.
    return f"{a.tx_per_s / b.tx_per_s:.2f}x" + ("*" if b.error_count else "")


def _tps(r: WorkloadResult | None) -> str:
    return "-" if r is None else f"{r.tx_per_s:.0f}"


def _errors(r: WorkloadResult | None) -> str:
    if r is None:
        return "-"
    text = f"{r.error_count}/{r.spec.expected}" if r.error_count else "0"
    if r.crashed_workers:
        text += f" ({r.crashed_workers} crashed)"
    if r.ok != r.rows or r.integrity != "ok":
        text += f" MISMATCH: {r.ok} ok, {r.rows} rows, integrity {r.integrity}"
    return text


def _latency(r: WorkloadResult | None) -> str:
    if r is None or not r.latencies:
        return "-"
    return f"{r.p50 * 1e3:.1f} / {r.p99 * 1e3:.0f}"


def table(results: list[Cell]) -> str:
    """Markdown table; ratios compare the mount to native careful (bt 5) and passthrough_fh (bt 5).

    A ratio marked * is against a baseline that itself failed transactions (read-then-write
    cells): its tx/s counts only the commits that got through.
    """
    careful = {
        (c.spec.pattern, c.spec.journal_mode, c.spec.writers): c.results
        for c in results
        if c.spec.busy_timeout == 5
    }
    lines = [
        "| pattern | mode | busy timeout | writers | native tx/s | native errors | native p50 / p99 ms "
        "| mount tx/s | mount errors | mount p50 / p99 ms | mount / native careful "
        "| passthrough_fh careful tx/s | mount / passthrough_fh careful | daemon CPU ms/tx |",
        "|" + " --- |" * 14,
    ]
    for c in results:
        s = c.spec
        base = careful.get((s.pattern, s.journal_mode, s.writers), {})
        mount = c.results.get("mount")
        cpu = "-"
        if c.daemon_cpu is not None and mount is not None and mount.ok:
            cpu = f"{c.daemon_cpu / mount.ok * 1e3:.2f}"
        lines.append(
            f"| {s.pattern} | {s.journal_mode} | {s.busy_timeout:g} s | {s.writers}x{s.transactions} "
            f"| {_tps(c.results.get('native'))} | {_errors(c.results.get('native'))} "
            f"| {_latency(c.results.get('native'))} "
            f"| {_tps(mount)} | {_errors(mount)} | {_latency(mount)} "
            f"| {_ratio(mount, base.get('native'))} "
            f"| {_tps(base.get('passthrough_fh'))} | {_ratio(mount, base.get('passthrough_fh'))} | {cpu} |"
        )
    return "\n".join(lines)
