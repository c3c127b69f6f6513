"""Which files of the backing tree are SQLite databases, and which of them Litestream can replicate.

Litestream replicates WAL databases only, and on opening a database it sets `journal_mode=WAL`
itself. So hoodydb never hands it a directory to watch (Litestream's `dir:` would turn every
rollback-journal database it finds into a WAL one, silently); the daemon looks at the tree itself,
reads each file's header, and gives Litestream the WAL databases by name. A rollback-journal
database is listed as not replicated, with the reason.

The tree is read in the backing directory, not through the mount: the daemon never touches its
own mount. The header's bytes 18 and 19 (file format write/read version) are 2 in WAL mode, 1 in
rollback-journal mode; `PRAGMA journal_mode=WAL` writes them to the database file itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from hoodydb.sql.paths import STATE_DIR_NAME

MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 20
WAL_VERSION = 2
# SQLite's own side files and the dot-directories of tools (Litestream's meta directory, .git).
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")

ROLLBACK_REASON = (
    "rollback-journal mode: Litestream replicates WAL databases only (PRAGMA journal_mode=WAL "
    "to have it replicated)"
)


@dataclass(frozen=True)
class Found:
    name: str  # path inside the tree, with `/`: "team/app.db"
    wal: bool

    @property
    def reason(self) -> str | None:
        """Why it is not replicated, or None."""
        return None if self.wal else ROLLBACK_REASON


def _header(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(HEADER_BYTES)
    except OSError:
        return b""


# A file's identity for the header cache: any write to the header changes the mtime, though
# perhaps not within the clock tick of the look that read it (as git's index, such a "racy" entry
# is read again until its mtime is this far in the past).
_Identity = tuple[int, int, int]
_RACY_NS = 2_000_000_000


class TreeScan:
    """Every SQLite database under `backing` (hoodydb's own state directory and dot-directories
    left out), sorted by name; asked again and again by the backup supervisor.

    A file's header is read again only when its inode, size or mtime changed, so a look at an
    unchanged tree costs one stat per file. `duration` is how long the last look took: the
    supervisor spaces its looks by it, so a very large tree costs a bounded share of a CPU."""

    def __init__(self, backing: Path) -> None:
        self.backing = backing
        self.duration = 0.0
        self._known: dict[str, tuple[_Identity, Found | None]] = {}

    def scan(self) -> list[Found]:
        started = time.monotonic()
        found: list[Found] = []
        known: dict[str, tuple[_Identity, Found | None]] = {}
        for directory, dirs, files in os.walk(self.backing):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != STATE_DIR_NAME)
            for name in files:
                if name.endswith(SIDE_SUFFIXES):
                    continue
                path = os.path.join(directory, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # gone meanwhile
                identity = (st.st_ino, st.st_size, st.st_mtime_ns)
                cached = self._known.get(path)
                entry = cached[1] if cached is not None and cached[0] == identity else self._read(path)
                racy = time.time_ns() - st.st_mtime_ns < _RACY_NS
                known[path] = (identity, entry) if not racy else ((0, 0, 0), entry)
                if entry is not None:
                    found.append(entry)
        self._known = known
        self.duration = time.monotonic() - started
        return sorted(found, key=lambda f: f.name)

    def _read(self, path: str) -> Found | None:
        header = _header(path)
        if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
            return None  # not SQLite, or an empty file not yet written
        rel = os.path.relpath(path, self.backing).replace(os.sep, "/")
        return Found(rel, header[18] == WAL_VERSION and header[19] == WAL_VERSION)
