"""`python -m bench [contention|single|readers|burst|webapp|litestream|feed|all] [--quick]`: markdown tables.

With no command it runs the quick suite (every part, small counts).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time

from bench import backup, burst, contention, feed, litestream, readers, single, webapp
from bench.targets import open_targets, passthrough_available


def _machine() -> str:
    python = platform.python_version()
    return f"{platform.node()}: {os.cpu_count()} cores, Linux {platform.release()}, Python {python}"


def _target_names(with_passthrough: bool) -> tuple[str, ...]:
    names: tuple[str, ...] = ("native", "mount")
    if with_passthrough:
        why_not = passthrough_available()
        if why_not is None:
            names += ("passthrough_fh",)
        else:
            print(f"(passthrough_fh baseline skipped: {why_not})", file=sys.stderr)
    return names


def run_contention(quick: bool, with_passthrough: bool, root: str | None, repeat: int = 1) -> None:
    specs = contention.cells(quick)
    results = []
    t0 = time.monotonic()
    with open_targets(_target_names(with_passthrough), root=root) as targets:
        for i, spec in enumerate(specs, 1):
            print(f"[{i}/{len(specs)}] {spec.label()}", file=sys.stderr, flush=True)
            results.append(contention.run_cell(spec, targets, repeat))
        mount_pid = targets["mount"].daemon_pid
        usage = contention.daemon_usage(mount_pid) if mount_pid else None
    runs = f", median of {repeat} interleaved runs per cell" if repeat > 1 else ""
    print(f"\n## Contention ({'quick' if quick else 'full'}{runs}, {time.monotonic() - t0:.0f} s)\n")
    print(contention.table(results))
    if usage is not None:
        print(
            f"\nMount daemon after the run: CPU {usage.cpu_seconds:.1f} s, RSS {usage.rss_bytes >> 20} MiB, "
            f"peak RSS {usage.peak_rss_bytes >> 20} MiB, {usage.threads} threads."
        )


def run_single(quick: bool, with_passthrough: bool, root: str | None) -> None:
    # noop-locks: the mount with lock decisions that cost nothing (bench/noop_locks.py), which
    # only a lone client can use: how much of the mount's cost is the lock manager.
    with open_targets((*_target_names(with_passthrough), "noop-locks"), root=root) as targets:
        measures = single.run(targets, quick)
    print(f"\n## Single process ({'quick' if quick else 'full'})\n")
    print(single.table(measures))


def _mount_targets(mount_args: list[str] | None) -> list[tuple[str, tuple[str, ...]]]:
    """One mount per --mount-args (named after its arguments); without any, one with defaults."""
    mounts: list[tuple[str, tuple[str, ...]]] = []
    for text in mount_args or [""]:
        args = tuple(shlex.split(text))
        name = f"mount {shlex.join(args)}" if args else "mount"
        if name in (n for n, _ in mounts):
            raise SystemExit(f"--mount-args {text!r} given twice")
        mounts.append((name, args))
    return mounts


def run_readers(quick: bool, root: str | None, repeat: int, mount_args: list[str] | None) -> None:
    mounts = _mount_targets(mount_args)
    t0 = time.monotonic()
    with open_targets(("native",), more_mounts=mounts, root=root) as targets:
        results = readers.run(targets, quick, repeat, lambda line: print(line, file=sys.stderr, flush=True))
    names = list(targets)
    c = results.counts
    runs = f", median of {repeat} interleaved runs per cell" if repeat > 1 else ""
    took = time.monotonic() - t0
    print(f"\n## Readers beside writers ({'quick' if quick else 'full'}{runs}, {took:.0f} s)\n")
    gap = readers.GAP * 1e3
    print(f"Reader latency: {c.lookups} point lookups about {gap:g} ms apart, busy timeout 5 s.\n")
    print(readers.latency_table(results, names))
    print(f"\nWriters beside an open reader: the reader holds a half-read SELECT for {c.hold:g} s.\n")
    print(readers.hold_table(results, names))
    print()
    print(readers.error_notes(results))


def run_burst(
    quick: bool, root: str | None, mount_args: list[str] | None, counts: str | None, repeat: int
) -> None:
    mounts = _mount_targets(mount_args)
    t0 = time.monotonic()
    sizes = tuple(int(n) for n in counts.split(",")) if counts else burst.clients(quick)
    with open_targets(("native",), more_mounts=mounts, root=root) as targets:
        results = burst.run(targets, sizes, lambda line: print(line, file=sys.stderr, flush=True), repeat)
    median = f", median of {repeat} interleaved runs per row" if repeat > 1 else ""
    print(f"\n## Bursts of one-shot writers ({time.monotonic() - t0:.0f} s{median})\n")
    print(
        'N `sqlite3 DB "INSERT ..."` processes started at once; on the mount with no busy timeout, '
        f"natively with `.timeout {burst.NATIVE_BUSY_MS}`. vs 64: tx/s over the same target's with "
        f"{min(sizes)} clients.\n"
    )
    print(burst.table(results))
    print()
    print(burst.error_notes(results))


def _none_broken(failed: list[str]) -> bool:
    """Say on stderr which invariants a run broke; True if none."""
    for line in failed:
        print(f"INVARIANT BROKEN: {line}", file=sys.stderr)
    return not failed


def run_webapp(quick: bool, root: str | None, repeat: int, mount_args: list[str] | None) -> bool:
    """The table, then False (and the broken invariants on stderr) if a run lost or invented an update."""
    mounts = _mount_targets(mount_args)
    c = webapp.counts(quick)
    t0 = time.monotonic()
    with open_targets(("native",), more_mounts=mounts, root=root) as targets:
        results = webapp.run(targets, c, repeat, lambda line: print(line, file=sys.stderr, flush=True))
    runs = f", median of {repeat} interleaved runs per cell" if repeat > 1 else ""
    print(
        f"\n## A web application's workers ({'quick' if quick else 'full'}{runs}, "
        f"{time.monotonic() - t0:.0f} s)\n"
    )
    print(
        f"{c.workers} worker processes, each with one read-write connection for {c.seconds:g} s: "
        f"{1 - webapp.WRITE_SHARE:.0%} point reads, {webapp.WRITE_SHARE:.0%} one-row UPDATEs, autocommit, "
        f"{webapp.THINK * 1e3:g} ms apart. alone: the same workers, reads only. vs native: same mode "
        "and busy timeout.\n"
    )
    print(webapp.table(results))
    print()
    print(webapp.error_notes(results))
    return _none_broken(webapp.failures(results))


def run_litestream(quick: bool, root: str | None, mount_args: list[str] | None) -> bool:
    """The table, then False if a replica did not restore to exactly the rows committed."""
    mounts = _mount_targets(mount_args)
    t0 = time.monotonic()
    with open_targets(("native",), more_mounts=mounts, root=root) as targets:
        cells = litestream.run(targets, quick, lambda line: print(line, file=sys.stderr, flush=True))
    print(f"\n## Litestream beside writers ({'quick' if quick else 'full'}, {time.monotonic() - t0:.0f} s)\n")
    print(
        f"{litestream.WRITERS} writer processes, busy timeout 0, WAL, with and without "
        "`litestream replicate` (a file replica) on the database. keep: autocommit INSERTs on a kept "
        "connection; txn: BEGIN, a read, an INSERT, COMMIT.\n"
    )
    print(litestream.table(cells))
    print()
    print(litestream.error_notes(cells))
    return _none_broken(litestream.failures(cells))


def run_backup(quick: bool, root: str | None) -> bool:
    """Writers' tx/s with continuous backup off and on (native, mount), and the mount's lag."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hoodydb-bench-replica-", dir=root) as replica_dir:
        replica = f"file://{replica_dir}"
        mounts = [("mount", ()), ("mount --replica", (f"--replica={replica}",))]
        with open_targets(("native",), more_mounts=mounts, root=root) as targets:
            cells = backup.run(
                targets,
                {"mount --replica": replica},
                quick,
                lambda line: print(line, file=sys.stderr, flush=True),
            )
    took = time.monotonic() - t0
    print(f"\n## Continuous backup beside writers ({'quick' if quick else 'full'}, {took:.0f} s)\n")
    print(
        f"{backup.WRITERS} writer processes, WAL, busy timeout {backup.BUSY_TIMEOUT_S:g} s. native on: "
        "`litestream replicate` started by hand; mount on: `hoodydb mount --replica file://...` (Litestream "
        "run by the daemon, through the mount). keep: autocommit INSERTs on a kept connection; txn: "
        "BEGIN, a read, an INSERT, COMMIT. vs off: over the same target without replication.\n"
    )
    print(backup.table(cells, "mount"))
    print()
    print(backup.lag_summary(cells))
    return _none_broken(backup.failures(cells))


def run_feed(quick: bool, root: str | None, repeat: int) -> bool:
    """The table, then False if a commit was lost or a watcher missed one."""
    t0 = time.monotonic()
    mounts = [(feed.OFF, ("--no-commit-feed",)), (feed.ON, ())]
    with open_targets(("native",), more_mounts=mounts, root=root) as targets:
        results = feed.run(targets, quick, repeat, lambda line: print(line, file=sys.stderr, flush=True))
    runs = f", median of {repeat} interleaved runs per cell" if repeat > 1 else ""
    print(
        f"\n## The commit feed's cost ({'quick' if quick else 'full'}{runs}, {time.monotonic() - t0:.0f} s)\n"
    )
    print(
        f"Autocommit INSERTs on kept connections, busy timeout {feed.BUSY_TIMEOUT:g} s. on / off and "
        f"watched / off: tx/s over the mount's with --no-commit-feed ({feed.WATCHERS} watchers follow "
        "every commit over the control socket).\n"
    )
    print(feed.table(results))
    print("\nThe mount daemon's CPU time per transaction (median run):\n")
    print(feed.cpu_table(results))
    plain, hooked = feed.hooks_cost()
    print(
        f"\nThe feed's hooks alone, in one process (two WAL frames and six unlocks per transaction, "
        f"best of 3): {plain:.1f} µs without, {hooked:.1f} µs with: {hooked - plain:.1f} µs per commit."
    )
    notes = feed.native_notes(results)
    if notes:
        print(f"\n{notes}")
    return _none_broken(feed.failures(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        choices=["contention", "single", "readers", "burst", "webapp", "litestream", "backup", "feed", "all"],
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a couple of minutes")
    parser.add_argument("--no-passthrough", action="store_true", help="skip the passthrough_fh baseline")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each contention, readers, webapp and burst cell N times, interleaved; keep the median",
    )
    parser.add_argument(
        "--mount-args",
        action="append",
        metavar="ARGS",
        help='readers, burst, webapp, litestream: arguments for `hoodydb mount`, e.g. "--policy serial"; '
        'given several times, one mount per occurrence in the same run ("" for the defaults)',
    )
    parser.add_argument("--clients", help="burst: client counts, comma-separated (default: 64 to 4000)")
    parser.add_argument("--root", help="directory for the temporary files (default: the system tmp dir)")
    args = parser.parse_args(argv)
    command, quick = args.command, args.quick
    if command is None:
        command, quick = "all", True
    print(f"Machine: {_machine()}")
    print(f"Command: python -m bench {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    with_pt = not args.no_passthrough
    if command in ("contention", "all"):
        run_contention(quick, with_pt, args.root, max(1, args.repeat))
    if command in ("single", "all"):
        run_single(quick, with_pt, args.root)
    if command in ("readers", "all"):
        run_readers(quick, args.root, max(1, args.repeat), args.mount_args)
    if command in ("burst", "all"):
        run_burst(quick, args.root, args.mount_args, args.clients, max(1, args.repeat))
    ok = True
    if command in ("webapp", "all"):
        ok = run_webapp(quick, args.root, max(1, args.repeat), args.mount_args)
    if command in ("litestream", "all"):
        ok = run_litestream(quick, args.root, args.mount_args) and ok
    if command in ("backup", "all"):
        ok = run_backup(quick, args.root) and ok
    if command in ("feed", "all"):
        ok = run_feed(quick, args.root, max(1, args.repeat)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
