"""The daemon's own resources under contention: flat memory, one CPU while clients queue."""

from __future__ import annotations

import os
import threading
import time

from tests.conftest import Mounted
from tests.proc_stats import rss_kib


def test_daemon_memory_stays_flat_under_contention(mounted: Mounted) -> None:
    """Regression: per-read bytes copies from libfuse's threads fragmented the C heap, and the
    daemon grew by about 2.7 MB per 1,600 contended transactions, without end."""
    from bench.workload import WorkloadSpec, run_workload

    spec = WorkloadSpec("keep", "wal", 0, 2, 800)
    db = mounted.path("memory.db")
    first = run_workload(db, spec)  # warm-up: threads, caches, arenas
    assert first.ok == spec.expected
    before = rss_kib(mounted.process.pid)
    for _ in range(3):
        result = run_workload(db, spec)
        assert result.ok == spec.expected and result.integrity == "ok", result.summary()
    grown = rss_kib(mounted.process.pid) - before
    assert grown < 2048, f"daemon RSS grew {grown} KiB over 4,800 transactions"


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
