"""`serve`'s mount: started again when its daemon dies, so the API and every native client get
their databases back without anyone restarting `serve`.

A dead daemon leaves its mountpoint answering ENOTCONN ("Transport endpoint is not connected")
to every client until it is unmounted. The kernel has dropped the daemon's claim on the backing
tree with its descriptors, so unmounting the dead mount and starting a new daemon is safe; lock
state dies with the daemon, as it does with every file lock when its holder goes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hoodydb.fs.process import MountError, MountProcess

log = logging.getLogger(__name__)

GIVE_UP_AFTER = 5  # remounts in a row that fail: then the daemon cannot run here at all


class SupervisedMount:
    """Starts a mount with `make()` and starts it again whenever its daemon exits on its own.

    `on_give_up` runs (from the watcher thread) when remounting failed GIVE_UP_AFTER times in a
    row; `serve` stops itself then, so that a supervisor such as systemd sees the failure."""

    def __init__(
        self,
        make: Callable[[], MountProcess],
        on_give_up: Callable[[], None],
        poll_interval: float = 0.5,
    ) -> None:
        self._make = make
        self._on_give_up = on_give_up
        self._poll_interval = poll_interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.current: MountProcess | None = None
        self.remounts = 0

    def start(self) -> SupervisedMount:
        mount = self._make()
        self.current = mount
        mount.start()
        self._thread = threading.Thread(target=self._watch, name="hoodydb-mount-watch", daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        failures = 0
        while not self._stopping.wait(self._poll_interval):
            mount = self.current
            if mount is None or mount.proc is None or mount.proc.poll() is None:
                continue
            log.error(
                "the mount daemon (pid %d) exited with status %s; mounting %s again",
                mount.pid,
                mount.proc.returncode,
                mount.mountpoint,
            )
            mount.stop()  # unmounts the dead mount, so the new daemon can mount there
            if self._stopping.is_set():
                return
            try:
                fresh = self._make()
                self.current = fresh
                fresh.start()
            except MountError as exc:
                failures += 1
                log.error("mounting again failed (%d of %d): %s", failures, GIVE_UP_AFTER, exc)
                if failures >= GIVE_UP_AFTER:
                    self._on_give_up()
                    return
                self._stopping.wait(min(2.0**failures, 10.0))
                continue
            failures = 0
            self.remounts += 1
            log.warning("mounted %s again (daemon pid %d)", fresh.mountpoint, fresh.pid)

    def stop(self) -> None:
        """Stop watching, then stop the daemon (it unmounts)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self.current is not None:
            self.current.stop()
