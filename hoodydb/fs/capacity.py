"""How many libfuse worker threads this machine gives the daemon (`--max-threads`' default).

Every lock request that waits for its turn holds a worker thread, so the thread bound is the bound
on clients waiting at once. A sleeping worker costs little: about 40 KiB of resident memory
(docs/PERFORMANCE.md, "Bursts of one-shot writers") and, with `clone_fd`, one file descriptor.
What runs out first is the machine's count of tasks (every client is a task too), then
descriptors, then memory; the default takes a share of each and the smallest wins.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

FLOOR = 256  # the default before it was measured: never less
CEILING = 16384
TASK_SHARE = 4  # a quarter of the tasks: the clients that wait are tasks as well
FD_RESERVE = 1024  # descriptors kept for open files (each client's open file is one here too)
MEMORY_SHARE = 16  # of the memory available now
BYTES_PER_THREAD = 256 * 1024  # measured about 40 KiB resident; room for deep Python frames


def _read_int(path: str | Path) -> int | None:
    try:
        text = Path(path).read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _cgroup_pids_max() -> int | None:
    """pids.max of this process's cgroup (v2), e.g. a container's `--pids-limit`."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return _read_int(Path("/sys/fs/cgroup") / line[3:].lstrip("/") / "pids.max")
    return None


def _memory_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def raise_open_files_limit() -> int:
    """Lift the soft descriptor limit to the hard one (one descriptor per worker); the result."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def default_max_threads() -> int:
    tasks = [
        _read_int("/proc/sys/kernel/threads-max"),
        _read_int("/proc/sys/kernel/pid_max"),
        _cgroup_pids_max(),
    ]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if nproc != resource.RLIM_INFINITY and os.geteuid() != 0:  # (root is not held to it)
        tasks.append(nproc)
    limits = [t // TASK_SHARE for t in tasks if t]
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if nofile != resource.RLIM_INFINITY:
        limits.append(max(nofile - FD_RESERVE, 0))
    memory = _memory_available()
    if memory:
        limits.append(memory // MEMORY_SHARE // BYTES_PER_THREAD)
    return max(FLOOR, min([CEILING, *limits]))
