"""Confine database paths to the configured roots.

A `db` parameter is either an absolute path under one of the roots or a path relative to the first
root. Whatever the spelling, the file it finally names (after following every symlink) must lie
under a root: `..`, NUL bytes and symlinks that lead out are refused. SQLite's own side files
(`-journal`, `-wal`, `-shm`) and hoodydb's state directory are never databases.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from hoodydb.sql import errors
from hoodydb.sql.errors import SqlApiError

STATE_DIR_NAME = ".hoodydb"
_SIDE_FILE_SUFFIXES = ("-journal", "-wal", "-shm")
_MOUNT_GONE = (errno.ENOTCONN, errno.ECONNABORTED)
MAX_PATH_CHARS = 4096
# SQLite's unix VFS refuses paths longer than 512 bytes (SQLITE_CANTOPEN); its side files add up to
# 8 bytes ("-journal") to the name, which must still fit the filesystem's 255-byte names.
MAX_SQLITE_PATH_BYTES = 512 - len("-journal")
MAX_NAME_BYTES = 255


class Roots:
    """The directories the API may touch, as given and as resolved (symlinks followed)."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]]) -> None:
        if not roots:
            raise ValueError("at least one root is needed")
        self.given = [Path(os.path.abspath(r)) for r in roots]
        self.resolved = [Path(os.path.realpath(r)) for r in roots]

    @property
    def first(self) -> Path:
        return self.given[0]

    def contains(self, real_path: Path) -> bool:
        """Whether an already resolved path lies strictly inside one of the roots."""
        return any(real_path != root and real_path.is_relative_to(root) for root in self.resolved)

    def relative_name(self, real_path: Path) -> str:
        """The path as clients should see it: relative to the first root that holds it."""
        for root in self.resolved:
            if real_path.is_relative_to(root):
                return str(real_path.relative_to(root))
        return str(real_path)


def _check_spelling(db: str) -> None:
    if not db:
        raise SqlApiError(errors.BAD_DB_PATH, "the database path is empty")
    if "\x00" in db:
        raise SqlApiError(errors.BAD_DB_PATH, "the database path contains a NUL byte")
    try:
        db.encode("utf-8")
    except UnicodeEncodeError:
        raise SqlApiError(errors.BAD_DB_PATH, "the database path is not valid Unicode") from None
    if len(db) > MAX_PATH_CHARS:
        raise SqlApiError(errors.BAD_DB_PATH, "the database path is too long")
    parts = Path(db).parts
    if ".." in parts:
        raise SqlApiError(errors.PATH_OUTSIDE_ROOTS, "'..' is not allowed in database paths")
    if STATE_DIR_NAME in parts:
        raise SqlApiError(errors.BAD_DB_PATH, f"{STATE_DIR_NAME}/ holds hoodydb's own state, not databases")
    if db.endswith(_SIDE_FILE_SUFFIXES):
        raise SqlApiError(errors.BAD_DB_PATH, "SQLite's -journal, -wal and -shm files are not databases")
    if db.endswith(("/", os.sep)):
        raise SqlApiError(errors.BAD_DB_PATH, "the database path names a directory")
    *dirs, name = parts
    if len(name.encode("utf-8")) > MAX_NAME_BYTES - len("-journal"):
        raise SqlApiError(
            errors.BAD_DB_PATH, f"database file names are limited to {MAX_NAME_BYTES - 8} bytes"
        )
    if any(len(d.encode("utf-8")) > MAX_NAME_BYTES for d in dirs):
        raise SqlApiError(errors.BAD_DB_PATH, f"directory names are limited to {MAX_NAME_BYTES} bytes")


def resolve_path(db: str, roots: Roots) -> Path:
    """Spell-check `db` and return its fully resolved location, which is under a root."""
    _check_spelling(db)
    candidate = Path(db) if os.path.isabs(db) else roots.first / db
    try:
        # realpath resolves every existing component; the missing tail is kept as spelled.
        real = Path(os.path.realpath(candidate))
    except (OSError, ValueError) as exc:
        raise SqlApiError(errors.BAD_DB_PATH, f"cannot resolve the database path: {exc}") from None
    if not roots.contains(real):
        raise SqlApiError(errors.PATH_OUTSIDE_ROOTS, "the database path is outside the configured roots")
    if len(os.fsencode(real)) > MAX_SQLITE_PATH_BYTES:
        raise SqlApiError(
            errors.BAD_DB_PATH,
            f"the database's full path is longer than SQLite accepts ({MAX_SQLITE_PATH_BYTES} bytes)",
        )
    # The file may itself be a symlink to another file under a root: the resolved name is the
    # identity, so two spellings of one file share one worker.
    if real.name.endswith(_SIDE_FILE_SUFFIXES) or STATE_DIR_NAME in real.parts:
        raise SqlApiError(errors.BAD_DB_PATH, "the database path names a file that is not a database")
    return real


def resolve_existing(db: str, roots: Roots) -> Path:
    """The resolved path of an existing database file, or a `db_not_found` / confinement error."""
    real = resolve_path(db, roots)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise SqlApiError(errors.DB_NOT_FOUND, f"no database at {db!r}") from None
    except OSError as exc:
        # A mount whose daemon died answers ENOTCONN until it is mounted again: not the caller's
        # mistake, and gone after a remount.
        code = errors.UNAVAILABLE if exc.errno in _MOUNT_GONE else errors.DB_NOT_FOUND
        raise SqlApiError(code, f"cannot reach {db!r}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SqlApiError(errors.DB_NOT_FOUND, f"{db!r} is not a regular file")
    return real


def resolve_new(db: str, roots: Roots, made: list[Path] | None = None) -> Path:
    """The resolved path where a new database may be created; its parent directories are made.

    The directories made are appended to `made` (outermost first), so a failed creation can remove
    them again (`remove_made`).
    """
    real = resolve_path(db, roots)
    if os.path.lexists(real):
        raise SqlApiError(errors.DB_EXISTS, f"{db!r} already exists")
    missing = [p for p in reversed(real.parents) if not os.path.lexists(p)]
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        if made is not None:
            made.extend(missing)
    except (FileExistsError, NotADirectoryError):
        raise SqlApiError(errors.BAD_DB_PATH, f"a parent of {db!r} is not a directory") from None
    except OSError as exc:
        raise SqlApiError(
            errors.STORAGE_ERROR, f"cannot create the parent of {db!r}: {exc.strerror}"
        ) from None
    # Re-check after mkdir: a component that appeared meanwhile could be a symlink leading out.
    if Path(os.path.realpath(real.parent)) != real.parent:
        raise SqlApiError(errors.PATH_OUTSIDE_ROOTS, "the database path changed while it was being created")
    return real


def remove_made(made: list[Path]) -> None:
    """Remove directories `resolve_new` made, innermost first, where they are still empty."""
    for directory in reversed(made):
        try:
            directory.rmdir()
        except OSError:
            return
