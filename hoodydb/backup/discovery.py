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


def find_databases(backing: Path) -> list[Found]:
    """Every SQLite database under `backing` (hoodydb's own state directory and dot-directories
    left out), sorted by name."""
    found = []
    for directory, dirs, files in os.walk(backing):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != STATE_DIR_NAME)
        for name in files:
            if name.endswith(SIDE_SUFFIXES):
                continue
            header = _header(os.path.join(directory, name))
            if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
                continue  # not SQLite, or an empty file not yet written
            rel = os.path.relpath(os.path.join(directory, name), backing).replace(os.sep, "/")
            found.append(Found(rel, header[18] == WAL_VERSION and header[19] == WAL_VERSION))
    return sorted(found, key=lambda f: f.name)
