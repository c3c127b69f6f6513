"""Bursts of one-shot writers: N `sqlite3` CLI processes started at once, each inserting one row.

What `xargs -P N`, a fleet of containers or a burst of generated tasks does to one database. On
the mount every client runs as a user would run it, with no busy timeout. Native disk runs the
same command with a 60 s busy timeout (`-cmd ".timeout 60000"`): without one most native
clients fail at once, so the native row is the throughput reference, not an error count.

Every client is timed from its spawn to its exit; tx/s is the clients that succeeded over the
wall time from the first spawn to the last exit. The daemon's threads and RSS are sampled while
the burst runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.targets import Target
from bench.workload import JOURNAL_MODES, _percentile, check_database, remove_database

CLIENTS = {"full": (64, 500, 1000, 2000, 4000), "quick": (64, 500)}
NATIVE_BUSY_MS = 60_000
SAMPLE_SECONDS = 0.05


@dataclass
class Burst:
    target: str
    journal_mode: str
    clients: int
    ok: int
    errors: Counter[str]
    wall: float
    latencies: list[float]
    rows: int
    integrity: str
    peak_threads: int | None = None  # of the daemon, while the burst ran
    peak_rss: int | None = None  # bytes, of the daemon, while the burst ran
    notes: list[str] = field(default_factory=list)

    @property
    def tx_per_s(self) -> float:
        return self.ok / self.wall if self.wall > 0 else 0.0


def clients(quick: bool) -> tuple[int, ...]:
    return CLIENTS["quick" if quick else "full"]


def prepare(path: str, journal_mode: str) -> None:
    remove_database(path)
    subprocess.run(
        ["sqlite3", path, f"PRAGMA journal_mode={journal_mode}", "CREATE TABLE t(id INTEGER PRIMARY KEY, v)"],
        check=True,
        capture_output=True,
    )


class _Sampler:
    """Peak threads and RSS of one process, read from /proc every SAMPLE_SECONDS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.threads = 0
        self.rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def _sample(self) -> None:
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key == "Threads":
                        self.threads = max(self.threads, int(value))
                    elif key == "VmRSS":
                        self.rss = max(self.rss, int(value.split()[0]) * 1024)
        except OSError:
            pass


def burst(path: str, n: int, cmd: list[str], log_path: str) -> tuple[int, Counter[str], float, list[float]]:
    """Spawn `n` clients at once (each `cmd + [path, INSERT]`); (successes, errors, wall, latencies).

    The clients share a process group led by a sleeping placeholder, so that they can be reaped
    as they exit (waitpid on the group) without touching this process's other children."""
    sqlite3 = shutil.which("sqlite3")
    assert sqlite3, "the sqlite3 CLI is required (apt-get install sqlite3)"
    leader = subprocess.Popen(["sleep", "3600"], process_group=0)
    spawned: dict[int, float] = {}
    finished: dict[int, tuple[float, int]] = {}
    reaped = threading.Event()

    def reap() -> None:
        while len(finished) < n:
            try:
                pid, status = os.waitpid(-leader.pid, 0)
            except ChildProcessError:
                time.sleep(0.001)  # (no client spawned yet)
                continue
            finished[pid] = (time.monotonic(), os.waitstatus_to_exitcode(status))
        reaped.set()

    reaper = threading.Thread(target=reap, daemon=True)
    with open(log_path, "ab") as log:
        t0 = time.monotonic()
        reaper.start()
        for i in range(n):
            argv = [sqlite3, *cmd, path, f"INSERT INTO t(v) VALUES ({i})"]
            spawned[
                os.posix_spawn(
                    sqlite3,
                    argv,
                    os.environ,
                    setpgroup=leader.pid,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
                        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    ],
                )
            ] = time.monotonic()
        reaped.wait()
    wall = max(t for t, _ in finished.values()) - t0
    leader.kill()
    leader.wait()
    ok = sum(1 for _, code in finished.values() if code == 0)
    latencies = [finished[pid][0] - t for pid, t in spawned.items()]
    with open(log_path, "rb") as f:
        errors = Counter(line.decode(errors="replace").strip() for line in f if line.strip())
    if n - ok and not errors:
        errors[f"exit status other than 0 ({n - ok} clients)"] = n - ok
    return ok, errors, wall, latencies


def run(
    targets: dict[str, Target], sizes: tuple[int, ...], progress: Callable[[str], None], repeat: int = 1
) -> list[Burst]:
    """Every burst on every target; with `repeat`, each `repeat` times, the targets interleaved, and
    each target's median run (by tx/s) kept whole: one burst is a lottery on a 2-core VM (4,000 WAL
    clients moved between 213 and 351 tx/s in one sitting)."""
    results = []
    for mode in JOURNAL_MODES:
        for n in sizes:
            runs: dict[str, list[Burst]] = {name: [] for name in targets}
            for round_ in range(repeat):
                for name, target in targets.items():
                    which = f" ({round_ + 1}/{repeat})" if repeat > 1 else ""
                    progress(f"{mode}: {n} clients on {name}{which}")
                    runs[name].append(_one(name, target, mode, n))
            for name in targets:
                done = sorted(runs[name], key=lambda r: r.tx_per_s)
                results.append(done[len(done) // 2])
    return results


def _one(name: str, target: Target, mode: str, n: int) -> Burst:
    path = str(target.directory / f"burst-{mode}.db")
    prepare(path, mode)
    cmd = ["-cmd", f".timeout {NATIVE_BUSY_MS}"] if target.daemon_pid is None else []
    log_path = str(target.directory.parent / f"burst-{name.replace(' ', '_')}.log")
    if os.path.exists(log_path):
        os.unlink(log_path)
    sampler = _Sampler(target.daemon_pid) if target.daemon_pid else None
    if sampler is not None:
        with sampler:
            ok, errors, wall, lat = burst(path, n, cmd, log_path)
    else:
        ok, errors, wall, lat = burst(path, n, cmd, log_path)
    rows, integrity = check_database(path)
    result = Burst(name, mode, n, ok, errors, wall, lat, rows, integrity)
    if sampler is not None:
        result.peak_threads, result.peak_rss = sampler.threads, sampler.rss
    if rows != ok:
        result.notes.append(f"{rows} rows for {ok} successes")
    remove_database(path)
    return result


def table(results: list[Burst]) -> str:
    by_key = {(r.target, r.journal_mode, r.clients): r for r in results}
    lines = [
        "| mode | clients | target | failures | tx/s | vs native | vs 64 | p50 ms | p99 ms "
        "| daemon threads | daemon RSS MiB | rows, integrity |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        native = by_key.get(("native", r.journal_mode, r.clients))
        base = by_key.get((r.target, r.journal_mode, min(c for _, m, c in by_key if m == r.journal_mode)))
        vs_native = f"{r.tx_per_s / native.tx_per_s:.2f}x" if native and native.tx_per_s else "-"
        vs_64 = f"{r.tx_per_s / base.tx_per_s:.2f}x" if base and base.tx_per_s else "-"
        threads = str(r.peak_threads) if r.peak_threads is not None else "-"
        rss = f"{r.peak_rss / 2**20:.0f}" if r.peak_rss is not None else "-"
        check = f"{r.rows}, {r.integrity}" + (f" ({'; '.join(r.notes)})" if r.notes else "")
        lines.append(
            f"| {r.journal_mode} | {r.clients} | {r.target} | {r.clients - r.ok} | {r.tx_per_s:.0f} | "
            f"{vs_native} | {vs_64} | {_percentile(r.latencies, 50) * 1e3:.0f} | "
            f"{_percentile(r.latencies, 99) * 1e3:.0f} | {threads} | {rss} | {check} |"
        )
    return "\n".join(lines)


def error_notes(results: list[Burst]) -> str:
    notes = []
    for r in results:
        for message, count in r.errors.most_common(3):
            notes.append(f"- {r.target}, {r.journal_mode}, {r.clients} clients: {count} x `{message}`")
    return "\n".join(notes) if notes else "No client failed."
