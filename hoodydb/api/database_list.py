"""`GET /api/v1/sqlite/databases`: the SQLite databases under the served roots, for the console.

A file counts when it starts with SQLite's header, or when it is empty and named like a database
(a database just created by the API stays empty until its first write). The walk is bounded in
depth and count so a huge tree cannot make the request endless.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hoodydb.api.access import token_scope
from hoodydb.api.responses import JsonResponse
from hoodydb.api.state import app_state
from hoodydb.sql.paths import STATE_DIR_NAME, Roots

SQLITE_HEADER = b"SQLite format 3\x00"
EMPTY_DATABASE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")
MAX_DEPTH = 8
MAX_FILES_LOOKED_AT = 10_000  # files and directories: a tree of empty directories is bounded too


def _is_database(path: Path, size: int) -> bool:
    if size == 0:
        return path.name.endswith(EMPTY_DATABASE_SUFFIXES)
    if size < len(SQLITE_HEADER):
        return False
    # Non-blocking and not through a symlink: the file may have become a FIFO since its lstat.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False
    finally:
        os.close(fd)


def find_databases(roots: Roots) -> tuple[list[dict[str, Any]], bool]:
    """(databases as `{"path", "size"}` in path order, whether the walk stopped at its bound)."""
    found: list[dict[str, Any]] = []
    looked_at = 0
    for root in roots.given:
        for directory, subdirs, files in os.walk(root):
            depth = len(Path(directory).relative_to(root).parts)
            # Never into hoodydb's own state, and never deeper than the bound.
            subdirs[:] = [] if depth >= MAX_DEPTH else sorted(d for d in subdirs if d != STATE_DIR_NAME)
            looked_at += len(subdirs)
            if looked_at > MAX_FILES_LOOKED_AT:
                return found, True
            for name in sorted(files):
                looked_at += 1
                if looked_at > MAX_FILES_LOOKED_AT:
                    return found, True
                path = Path(directory, name)
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if path.is_file() and not path.is_symlink() and _is_database(path, st.st_size):
                    found.append({"path": str(path.relative_to(root)), "size": st.st_size})
    found.sort(key=lambda d: str(d["path"]))
    return found, False


async def list_databases(request: Request) -> Response:
    # The walk goes through the mount: never on the event loop.
    databases, truncated = await run_in_threadpool(find_databases, app_state(request).config.roots)
    # A `--db` token sees only its own databases (the walk lists regular files, never symlinks,
    # so each name is already the file's own path).
    scope = token_scope(request)
    databases = [d for d in databases if scope.allows_database(str(d["path"]))]
    return JsonResponse({"databases": databases, "truncated": truncated})
