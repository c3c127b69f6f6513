"""Where a benchmark puts its files: native disk, a hoodydb mount, or libfuse's passthrough_fh.

All three live under one temporary directory on the same disk, so the only difference between
them is the layer in between. passthrough_fh is libfuse's own C example, built here from
libfuse3-dev's sources into the temporary directory (never committed); it has no `lock`
operation, so the kernel handles POSIX locks itself: it is the cost of FUSE without our gate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from hoodydb.fs.process import MountProcess, force_unmount, is_mounted

PASSTHROUGH_SOURCE = Path("/usr/share/doc/libfuse3-dev/examples/passthrough_fh.c")


@dataclass(frozen=True)
class Target:
    name: str
    directory: Path  # where the benchmark's files go
    daemon_pid: int | None = None  # the FUSE daemon, for CPU and memory figures


@dataclass(frozen=True)
class DaemonUsage:
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int
    threads: int


def daemon_usage(pid: int) -> DaemonUsage:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    status: dict[str, str] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()

    def kib(key: str) -> int:
        return int(status.get(key, "0 kB").split()[0]) * 1024

    return DaemonUsage(cpu, kib("VmRSS"), kib("VmHWM"), int(status.get("Threads", "0")))


def passthrough_available() -> str | None:
    """None if passthrough_fh can be built here, else why not."""
    if not PASSTHROUGH_SOURCE.exists():
        return f"{PASSTHROUGH_SOURCE} missing (apt install libfuse3-dev)"
    for tool in ("gcc", "pkg-config"):
        if not shutil.which(tool):
            return f"{tool} missing"
    return None


def build_passthrough(out_dir: Path) -> Path:
    flags = subprocess.run(
        ["pkg-config", "fuse3", "--cflags", "--libs"], check=True, capture_output=True, text=True
    ).stdout.split()
    binary = out_dir / "passthrough_fh"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-Wall",
            "-DHAVE_UTIMENSAT",
            "-DHAVE_POSIX_FALLOCATE",
            str(PASSTHROUGH_SOURCE),
            *flags,
            "-o",
            str(binary),
        ],
        check=True,
        capture_output=True,
    )
    return binary


@contextmanager
def passthrough_mount(binary: Path, mountpoint: Path, timeout: float = 10.0) -> Iterator[int]:
    """Run passthrough_fh in the foreground at `mountpoint` (it mirrors /); yields its pid."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(binary), "-f", str(mountpoint)], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout
        while not is_mounted(mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("passthrough_fh did not mount")
            time.sleep(0.02)
        yield proc.pid
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False, capture_output=True)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        force_unmount(mountpoint)


@contextmanager
def open_targets(
    names: tuple[str, ...] = ("native", "mount", "passthrough_fh"),
    *,
    mount_args: tuple[str, ...] = (),
    more_mounts: Sequence[tuple[str, tuple[str, ...]]] = (),
    root: str | None = None,
) -> Iterator[dict[str, Target]]:
    """Set up the requested targets in one fresh temporary directory; tear all down after.

    `more_mounts`: further hoodydb mounts as (target name, extra mount arguments), each on a
    backing directory of its own, so that mount options (lock policies) compare in one run.
    """
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hoodydb-bench-", dir=root)))
        targets: dict[str, Target] = {}
        if "native" in names:
            (tmp / "native").mkdir()
            targets["native"] = Target("native", tmp / "native")
        if "mount" in names:
            (tmp / "backing").mkdir()
            mount = stack.enter_context(
                MountProcess(
                    tmp / "backing", tmp / "mnt", extra_args=mount_args, stderr_path=tmp / "mount.log"
                )
            )
            targets["mount"] = Target("mount", mount.mountpoint, mount.pid)
        for i, (name, args) in enumerate(more_mounts):
            backing = tmp / f"backing-{i}"
            backing.mkdir()
            log = tmp / f"mount-{i}.log"
            mount = stack.enter_context(
                MountProcess(backing, tmp / f"mnt-{i}", extra_args=args, stderr_path=log)
            )
            targets[name] = Target(name, mount.mountpoint, mount.pid)
        if "noop-locks" in names:
            (tmp / "noop-backing").mkdir()
            mount = stack.enter_context(
                MountProcess(
                    tmp / "noop-backing",
                    tmp / "noop-mnt",
                    extra_args=mount_args,
                    stderr_path=tmp / "noop-mount.log",
                    program=[sys.executable, "-m", "bench.noop_locks"],
                )
            )
            targets["noop-locks"] = Target("noop-locks", mount.mountpoint, mount.pid)
        if "passthrough_fh" in names:
            binary = build_passthrough(tmp)
            (tmp / "pt-files").mkdir()
            pid = stack.enter_context(passthrough_mount(binary, tmp / "pt"))
            mirrored = tmp / "pt" / (tmp / "pt-files").resolve().relative_to("/")
            targets["passthrough_fh"] = Target("passthrough_fh", mirrored, pid)
        yield targets
