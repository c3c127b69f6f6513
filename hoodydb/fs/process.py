"""Run a hoodydb mount as a child process: start it, wait until it is mounted, always unmount.

Used by `hoodydb serve`, the benchmarks and the tests, so that every caller gets the same
start-up check and the same guaranteed clean-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


def this_program() -> list[str]:
    """The command that started this process, without its arguments: how it runs itself again.

    The zipapp (`python3 hoodydb.pyz`), an installed entry point, `python -m hoodydb` and the
    PyInstaller binary each start a copy of themselves, never some other hoodydb that happens to
    be importable from the current directory."""
    if getattr(sys, "frozen", False):
        return [sys.executable]  # the PyInstaller binary itself
    # orig_argv is the interpreter's own command line: interpreter, its options, then the script
    # (or -m MODULE, or -c CODE); sys.argv is what follows, with sys.argv[0] standing for it.
    prefix = sys.orig_argv[: len(sys.orig_argv) - len(sys.argv) + 1]
    if len(prefix) > 1 and prefix[-2] not in ("-m", "-c") and not prefix[-1].startswith("-"):
        prefix[-1] = os.path.abspath(prefix[-1])  # the same file, whatever the child's directory
    return [sys.executable, *prefix[1:]]


def _child_env() -> dict[str, str] | None:
    """A PyInstaller one-file child must unpack itself afresh: by default it would reuse this
    process's temporary directory, which goes when this process exits (a detached mount)."""
    if not getattr(sys, "frozen", False):
        return None
    return {**os.environ, "PYINSTALLER_RESET_ENVIRONMENT": "1"}


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold stop signals while the child is being forked, and deliver them afterwards.

    A signal handler that raises (as `hoodydb serve`'s does) in the middle of `Popen` would lose
    the only reference to a child that is already running, and it would go on to mount."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[signal.Signals] = []
    previous = {
        signum: signal.signal(signum, lambda s, _: held.append(signal.Signals(s))) for signum in _STOP_SIGNALS
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: a handler installed outside Python; ours stays
                signal.signal(signum, handler)
        for signum in held:
            signal.raise_signal(signum)


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
        program: Sequence[str] | None = None,
    ) -> None:
        self.backing = Path(backing)
        self.mountpoint = Path(mountpoint)
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.stderr_path = stderr_path
        self.detach = detach  # own session: survives the parent and its terminal's Ctrl-C
        # The command before `mount ...`: the CLI passes this_program(); library callers (tests,
        # the benchmark) run the hoodydb they import.
        self.program = list(program) if program is not None else [sys.executable, "-m", "hoodydb"]
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> MountProcess:
        """Start the daemon and wait until it has mounted. If anything interrupts the wait (a
        stop signal, a timeout), the daemon is stopped before the exception goes on."""
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if is_mounted(self.mountpoint):  # else the wait below would take that mount for ours
            raise MountError(f"{self.mountpoint} is busy: a FUSE file system is already mounted there")
        cmd = [*self.program, "mount", str(self.backing), str(self.mountpoint), "--foreground"]
        stderr = open(self.stderr_path, "ab") if self.stderr_path else None  # noqa: SIM115
        self._log_start = stderr.tell() if stderr is not None else 0
        try:
            with _stop_signals_held():
                self.proc = subprocess.Popen(
                    cmd + self.extra_args,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL if self.detach else None,
                    stderr=stderr,
                    start_new_session=self.detach,
                    env=_child_env(),
                )
            self._wait_mounted()
        except BaseException:
            self.stop()
            raise
        finally:
            if stderr is not None:
                stderr.close()
        return self

    def _last_error(self) -> str:
        """The daemon's reason from its log (a claim lost to a mount started at the same instant)."""
        try:
            lines = (
                Path(self.stderr_path).read_text(errors="replace").splitlines() if self.stderr_path else []
            )
        except OSError:
            return ""
        return f": {lines[-1].removeprefix('Error: ')}" if lines and lines[-1].strip() else ""

    def _wait_mounted(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while mounted_type(self.mountpoint) != FSTYPE:
            if self.proc.poll() is not None:
                raise MountError(
                    f"hoodydb mount exited with status {self.proc.returncode} before mounting"
                    + self._last_error()
                )
            if time.monotonic() > deadline:
                raise MountError(f"{self.mountpoint} was not mounted within {self.start_timeout} s")
            time.sleep(0.02)

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
