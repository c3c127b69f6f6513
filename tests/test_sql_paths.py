"""Path confinement: every spelling of a database path must stay under the configured roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hoodydb.sql import errors
from hoodydb.sql.errors import SqlApiError
from hoodydb.sql.paths import Roots, resolve_existing, resolve_new


@pytest.fixture
def roots(tmp_path: Path) -> Roots:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a.db").write_bytes(b"")
    (tmp_path / "outside.db").write_bytes(b"")
    return Roots([tmp_path / "root"])


def code_of(db: str, roots: Roots, *, new: bool = False) -> str:
    with pytest.raises(SqlApiError) as info:
        (resolve_new if new else resolve_existing)(db, roots)
    return info.value.code


def test_relative_and_absolute_spellings(roots: Roots) -> None:
    expected = roots.resolved[0] / "a.db"
    assert resolve_existing("a.db", roots) == expected
    assert resolve_existing(str(roots.first / "a.db"), roots) == expected
    assert resolve_existing("./a.db", roots) == expected


@pytest.mark.parametrize("db", ["../outside.db", "x/../../outside.db", "/etc/passwd", "/tmp"])
def test_escapes_are_refused(roots: Roots, db: str) -> None:
    assert code_of(db, roots) == errors.PATH_OUTSIDE_ROOTS
    assert code_of(db, roots, new=True) in (errors.PATH_OUTSIDE_ROOTS, errors.BAD_DB_PATH)


def test_symlink_escape_is_refused(roots: Roots, tmp_path: Path) -> None:
    os.symlink(tmp_path / "outside.db", roots.first / "link.db")
    os.symlink(tmp_path, roots.first / "dirlink")
    assert code_of("link.db", roots) == errors.PATH_OUTSIDE_ROOTS
    assert code_of("dirlink/outside.db", roots) == errors.PATH_OUTSIDE_ROOTS
    assert code_of("dirlink/new.db", roots, new=True) == errors.PATH_OUTSIDE_ROOTS
    assert not (tmp_path / "new.db").exists()


def test_symlink_inside_the_root_is_followed(roots: Roots) -> None:
    os.symlink("a.db", roots.first / "alias.db")
    assert resolve_existing("alias.db", roots) == roots.resolved[0] / "a.db"


@pytest.mark.parametrize(
    "db", ["", "a\x00b.db", "a.db-journal", "a.db-wal", "x.db-shm", ".hoodydb/token", "dir/", "/"]
)
def test_bad_spellings(roots: Roots, db: str) -> None:
    assert code_of(db, roots) == errors.BAD_DB_PATH


def test_missing_and_non_file(roots: Roots) -> None:
    (roots.first / "dir").mkdir()
    assert code_of("missing.db", roots) == errors.DB_NOT_FOUND
    assert code_of("dir", roots) == errors.DB_NOT_FOUND


def test_new_database_paths(roots: Roots) -> None:
    assert resolve_new("sub/dir/new.db", roots) == roots.resolved[0] / "sub" / "dir" / "new.db"
    assert (roots.first / "sub" / "dir").is_dir()
    assert code_of("a.db", roots, new=True) == errors.DB_EXISTS
    assert code_of("a.db/x.db", roots, new=True) == errors.BAD_DB_PATH
