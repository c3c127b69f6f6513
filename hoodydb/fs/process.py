"""Run a hoodydb mount as a child process: start it, wait until it is mounted, always unmount.

Used by `hoodydb serve`, the benchmarks and the tests, so that every caller gets the same
start-up check and the same guaranteed clean-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


class MountError(RuntimeError):
    """The mount did not come up, or did not go away."""


FSTYPE = "fuse.hoodydb"


def mounted_type(path: str | os.PathLike[str]) -> str | None:
    """The filesystem type of the topmost mount at `path`, or None if nothing is mounted there.

    mountinfo lists a namespace's mounts in the order they were made, so the last entry for a
    path is the one on top."""
    target = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                found = fields[fields.index("-") + 1]
    return found


def is_mounted(path: str | os.PathLike[str]) -> bool:
    """Is a FUSE filesystem on top at `path` (ours, or one whose daemon died)?

    A plain bind mount there is not: a container's volume (`-v host:/mnt/hoodydb:rshared`) is
    exactly where the mount goes, on top of it."""
    fstype = mounted_type(path)
    return fstype is not None and fstype.startswith("fuse")


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, as an operator would; SIGKILL if it has not exited within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def force_unmount(mountpoint: str | os.PathLike[str]) -> None:
    """Lazy-unmount a mount whose daemon is gone or stuck; harmless when nothing is mounted."""
    if is_mounted(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", os.fspath(mountpoint)], check=False, capture_output=True)


class MountProcess:
    """`with MountProcess(backing, mountpoint) as m:` runs `hoodydb mount` in the foreground as a child."""

    def __init__(
        self,
        backing: str | os.PathLike[str],
        mountpoint: str | os.PathLike[str],
        *,
        extra_args: Sequence[str] = (),
        start_timeout: float = 20.0,
        stderr_path: str | os.PathLike[str] | None = None,
        detach: bool = False,
        module: str = "hoodydb",
    ) -> None:
        self.backing = Path(backing)
        self.mountpoint = Path(mountpoint)
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.stderr_path = stderr_path
        self.detach = detach  # own session: survives the parent and its terminal's Ctrl-C
        self.module = module  # run as `python -m MODULE mount ...` (the benchmark swaps in its own)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> MountProcess:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if is_mounted(self.mountpoint):  # else the wait below would take that mount for ours
            raise MountError(f"{self.mountpoint} is busy: a FUSE file system is already mounted there")
        cmd = [
            sys.executable,
            "-m",
            self.module,
            "mount",
            str(self.backing),
            str(self.mountpoint),
            "--foreground",
        ]
        stderr = open(self.stderr_path, "ab") if self.stderr_path else None  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                cmd + self.extra_args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if self.detach else None,
                stderr=stderr,
                start_new_session=self.detach,
            )
        finally:
            if stderr is not None:
                stderr.close()
        deadline = time.monotonic() + self.start_timeout
        while mounted_type(self.mountpoint) != FSTYPE:
            if self.proc.poll() is not None:
                raise MountError(f"hoodydb mount exited with status {self.proc.returncode} before mounting")
            if time.monotonic() > deadline:
                self.stop()
                raise MountError(f"{self.mountpoint} was not mounted within {self.start_timeout} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the daemon (it unmounts itself); kill and lazy-unmount if it does not."""
        if self.proc is None:
            return None
        status = terminate(self.proc, timeout)
        force_unmount(self.mountpoint)
        return status

    def kill(self) -> None:
        """SIGKILL the daemon, as a crash would; the mountpoint is left for `stop()` to clean."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> MountProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
