"""Numbers a test reads about a process (the mount's daemon) from /proc."""

from __future__ import annotations

from pathlib import Path


def proc_number(pid: int, file: str, key: str) -> int:
    """The number after `key:` in /proc/PID/FILE (status, io)."""
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/{file}")


def rss_kib(pid: int) -> int:
    return proc_number(pid, "status", "VmRSS")


def daemon_bytes_read(pid: int) -> int:
    """Bytes the process has read through system calls: what a cache hit saves the daemon."""
    return proc_number(pid, "io", "rchar")
