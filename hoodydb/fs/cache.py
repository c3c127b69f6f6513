"""When the kernel may keep a file's cached pages: decided at each open, from what the daemon saw.

The kernel's own check (`auto_inval_data`: drop a file's pages whenever a new mtime shows up) is
off, because every write through the mount makes one: each commit cost the WAL's readers their
cache and every mapping of the -shm its pages. This module replaces it with a check at open:

- While a file is open through the mount, every change to it goes through the kernel's cache.
- When it closes, the daemon notes its size, mtime and ctime; an open that finds them changed (or
  the file replaced) drops the cache. The note is taken only if it can be trusted: RELEASE
  arrives after the client's close() has returned, so the file must look as it did at FLUSH,
  which close() waits for; and at FLUSH its ctime must be older than the file system's clock
  tick, or a change right after could carry the same timestamps (a tick is a few ms on older
  kernels; timestamps in whole seconds, as on vfat or some NFS servers, get seconds).
- libfuse gives every name of a file its own kernel inode, so a file with several hard links
  has one page cache per name and a write through one name leaves the others stale. Such a file
  is opened without any page cache (direct I/O), and so is every later open of it while one of
  those is open (a direct write does not drop other handles' pages on every kernel). A -shm,
  which SQLite must map, cannot go without the cache: Passthrough refuses to open one under a
  second name while it is open under the first.

Not caught: a change made behind the mount while a client has the file open (its locks are
bypassed too), and a second hard link made while the file is open.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from hoodydb.locks import FileKey

FileVersion = tuple[int, int, int]
"""(size, mtime, ctime) of a backing file: a change to the file, from anywhere, changes it."""

REMEMBERED = 4096  # closed files whose version is kept
RACY_NS = 25_000_000  # a few ticks of the kernel's coarse clock (HZ=100: 10 ms)
COARSE_RACY_NS = 3_000_000_000  # timestamps in whole seconds (vfat's mtime: 2 s)


def version(st: os.stat_result) -> FileVersion:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


@dataclass(frozen=True, slots=True)
class CacheMode:
    keep: bool  # keep the kernel's cached pages of the file at this open
    direct: bool = False  # no page cache at all for this open


class CacheFreshness:
    """The bookkeeping behind `CacheMode`; the caller serialises the calls (one mutex)."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        remembered: int = REMEMBERED,
        racy_ns: int = RACY_NS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.enabled = enabled
        self.remembered = remembered
        self.racy_ns = racy_ns
        self.clock = clock
        self.closed_as: dict[FileKey, FileVersion] = {}
        self._flushed_as: dict[int, FileVersion | None] = {}  # None: too recent to trust
        self._direct: dict[FileKey, int] = {}  # open handles without page cache, per file

    def opened(self, key: FileKey, st: os.stat_result, *, already_open: int, mapped: bool) -> CacheMode:
        """A handle on `key` was opened; `already_open` handles were open before it."""
        last_seen = self.closed_as.pop(key, None)
        if (stat.S_ISREG(st.st_mode) and st.st_nlink > 1) or key in self._direct:
            if mapped:
                return CacheMode(keep=False)
            self._direct[key] = self._direct.get(key, 0) + 1
            return CacheMode(keep=False, direct=True)
        return CacheMode(keep=self.enabled and (already_open > 0 or last_seen == version(st)))

    def flushed(self, fh: int, st: os.stat_result) -> None:
        """A close() of `fh` is under way (FLUSH): how the file looks as the client lets go."""
        coarse = st.st_ctime_ns % 1_000_000_000 == 0 and st.st_mtime_ns % 1_000_000_000 == 0
        recent = self.clock() - st.st_ctime_ns < (COARSE_RACY_NS if coarse else self.racy_ns)
        self._flushed_as[fh] = None if recent else version(st)

    def released(
        self, fh: int, key: FileKey, mode: CacheMode, st: os.stat_result | None, *, last: bool
    ) -> None:
        """`fh` is closed for good; `last`: no handle on the file is left. `st`: None if fstat failed."""
        flushed = self._flushed_as.pop(fh, None)
        if mode.direct:
            left = self._direct[key] - 1
            if left:
                self._direct[key] = left
            else:
                del self._direct[key]
        if not last or st is None or flushed is None or flushed != version(st):
            return  # changed since close(), or too recently to tell a later change apart
        self.closed_as[key] = flushed
        if len(self.closed_as) > self.remembered:
            del self.closed_as[next(iter(self.closed_as))]
