"""The stage markers: which commands need which marker, and the guard that enforces them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.stages import markers_for_command

PYTHON_M = [sys.executable, "-m", "hoodydb"]


@pytest.mark.parametrize(
    ("argv", "needed"),
    [
        ([*PYTHON_M, "mount", "b", "m", "--foreground"], {"fuse"}),
        (["/venv/bin/hoodydb", "mount", "b", "m"], {"fuse"}),
        (["python3", "dist/hoodydb.pyz", "mount", "b", "m"], {"fuse"}),
        (["fusermount3", "-u", "m"], {"fuse"}),
        ([*PYTHON_M, "serve", "--no-mount", "--root", "r"], {"http"}),
        ([*PYTHON_M, "serve", "--data", "d", "--mount", "m"], {"http", "fuse"}),
        ([*PYTHON_M, "--help"], set()),
        ([*PYTHON_M, "sql", "t.db", "SELECT 1"], set()),
        (["sqlite3", "mount.db", "SELECT 1"], set()),
        ([sys.executable, "-c", "print('serve')"], set()),
    ],
)
def test_commands_and_the_markers_they_need(argv: list[str], needed: set[str]) -> None:
    assert markers_for_command(argv) == needed


@pytest.mark.parametrize(
    ("command", "marker"),
    [(["mount", "/nonexistent/b", "/nonexistent/m"], "fuse"), (["serve", "--no-mount"], "http")],
)
def test_an_unmarked_test_cannot_start_a_mount_or_a_server(command: list[str], marker: str) -> None:
    """This test has neither marker, so the session's guard refuses before anything starts."""
    with pytest.raises(RuntimeError, match=f"is not marked {marker}"):
        subprocess.run([*PYTHON_M, *command], capture_output=True, timeout=60, check=False)
