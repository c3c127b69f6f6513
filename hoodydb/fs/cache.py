"""When the kernel may keep a file's cached pages: decided at each open, from what the daemon saw.

The kernel's own check (`auto_inval_data`: drop a file's pages whenever a new mtime shows up) is
off, because every write through the mount makes one: each commit cost the WAL's readers their
cache and every mapping of the -shm its pages. This module replaces it with a check at open:

- While a file is open through the mount, every change to it goes through the kernel's cache.
- When it closes, the daemon notes its size, mtime and ctime; an open that finds them changed (or
  the file replaced) drops the cache. The note is taken only if it can be trusted: RELEASE
  arrives after the client's close() has returned, so the file must look as it did at FLUSH,
  which close() waits for; and its ctime must be older than a tick of a coarse file-system
  clock, or a change right after could carry the same timestamps.
- libfuse gives every name of a file its own kernel inode, so a file with several hard links
  has one page cache per name and a write through one name leaves the others stale. Such a file
  is opened without any page cache (direct I/O), except a -shm, which SQLite must map.

Not caught: a change made behind the mount while a client has the file open (its locks are
bypassed too), and a second hard link made while the file is open.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from hoodydb.locks.types import FileKey

FileVersion = tuple[int, int, int]
"""(size, mtime, ctime) of a backing file: a change to the file, from anywhere, changes it."""

REMEMBERED = 4096  # closed files whose version is kept
RACY_NS = 25_000_000  # a few ticks of the coarsest file-system clock (HZ=100: 10 ms)


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
        self._flushed_as: dict[int, FileVersion] = {}

    def opened(self, key: FileKey, st: os.stat_result, *, already_open: int, mapped: bool) -> CacheMode:
        """A handle on `key` was opened; `already_open` handles were open before it."""
        last_seen = self.closed_as.pop(key, None)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            return CacheMode(keep=False, direct=not mapped)
        return CacheMode(keep=self.enabled and (already_open > 0 or last_seen == version(st)))

    def flushed(self, fh: int, st: os.stat_result) -> None:
        """A close() of `fh` is under way (FLUSH): how the file looks as the client lets go."""
        self._flushed_as[fh] = version(st)

    def released(self, fh: int, key: FileKey, st: os.stat_result | None, *, last: bool) -> None:
        """`fh` is closed for good; `last`: no handle on the file is left. `st`: None if fstat failed."""
        flushed = self._flushed_as.pop(fh, None)
        if not last or st is None:
            return
        now = version(st)
        if flushed != now or self.clock() - st.st_ctime_ns < self.racy_ns:
            return  # changed since close(), or too recently to tell a later change apart
        self.closed_as[key] = now
        if len(self.closed_as) > self.remembered:
            del self.closed_as[next(iter(self.closed_as))]
