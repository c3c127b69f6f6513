"""The database listing walks the served tree; its bound must hold for trees of directories too,
and it must never open a file that is not a regular file (a FIFO would block the walk forever)."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from hoodydb.api.database_list import MAX_FILES_LOOKED_AT, find_databases
from hoodydb.sql.paths import Roots


def test_a_tree_of_empty_directories_stops_at_the_bound(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for i in range(MAX_FILES_LOOKED_AT + 50):
        (root / f"d{i:05}").mkdir(parents=True)
    sqlite3.connect(root / f"d{MAX_FILES_LOOKED_AT + 49:05}" / "late.db").execute("CREATE TABLE t(x)")
    found, truncated = find_databases(Roots([root]))
    assert truncated
    assert found == []


def test_a_fifo_named_like_a_database_is_never_opened(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "pipe.db")
    sqlite3.connect(root / "real.db").execute("CREATE TABLE t(x)")
    result: list[object] = []
    walker = threading.Thread(target=lambda: result.append(find_databases(Roots([root]))), daemon=True)
    walker.start()
    walker.join(10)
    assert result, "the walk blocked"
    found, truncated = result[0]  # type: ignore[misc]
    assert [d["path"] for d in found] == ["real.db"] and not truncated
