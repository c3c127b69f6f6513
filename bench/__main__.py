"""`python -m bench [contention|single|all] [--quick]`: benchmark tables in markdown.

With no command it runs the quick suite (both benchmarks, small counts).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from bench import contention, single
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["contention", "single", "all"])
    parser.add_argument("--quick", action="store_true", help="small counts: a couple of minutes")
    parser.add_argument("--no-passthrough", action="store_true", help="skip the passthrough_fh baseline")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each contention cell N times, interleaved; keep the median"
    )
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
