"""The claim on a backing tree, without FUSE: flock conflicts between open file descriptions
count within one process too, so one test process can play several daemons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hoodydb.fs.claim import ClaimError, TreeClaim, probe


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for d in ("served/inner/deeper", "beside"):
        (tmp_path / d).mkdir(parents=True)
    return tmp_path


def test_the_same_directory_is_refused_and_the_holder_named(tree: Path) -> None:
    with TreeClaim(tree / "served"):
        with pytest.raises(ClaimError) as refused:
            TreeClaim(tree / "served").acquire()
        message = str(refused.value)
        assert f"{tree / 'served'} is already served" in message
        assert f"pid {os.getpid()}" in message
        assert "mountpoint is not visible here" in message  # no mount: this test only locks


def test_the_same_directory_by_another_path_is_refused(tree: Path) -> None:
    os.symlink(tree / "served", tree / "alias")
    with TreeClaim(tree / "served"), pytest.raises(ClaimError):
        probe(tree / "alias")


def test_trees_inside_and_above_a_served_one_are_refused(tree: Path) -> None:
    served = tree / "served" / "inner"
    with TreeClaim(served):
        with pytest.raises(
            ClaimError, match=f"{served / 'deeper'} is inside {served}, which is already served"
        ):
            probe(served / "deeper")
        with pytest.raises(
            ClaimError, match=f"{tree / 'served'} contains a directory, which is already served"
        ):
            probe(tree / "served")
        with pytest.raises(ClaimError, match=f"{tree} contains a directory"):
            probe(tree)


def test_trees_side_by_side_coexist(tree: Path) -> None:
    (tree / "served" / "other").mkdir()
    with TreeClaim(tree / "served" / "inner"), TreeClaim(tree / "beside"):
        probe(tree / "served" / "other")  # shares only the directories above with "inner"


def test_a_refused_claim_holds_nothing_and_a_released_one_frees_the_tree(tree: Path) -> None:
    first = TreeClaim(tree / "served").acquire()
    with pytest.raises(ClaimError):
        probe(tree / "served" / "inner")
    first.release()
    # The refused claim above let go of what it had taken (its directory, the ones above it).
    probe(tree)
    probe(tree / "served" / "inner")


CLAIMER = """
import sys, time
from hoodydb.fs.claim import TreeClaim
claim = TreeClaim(sys.argv[1]).acquire()
print("claimed", flush=True)
time.sleep(600)
"""


def test_the_claim_of_a_killed_process_is_gone_at_once(tree: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", CLAIMER, str(tree / "served")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"claimed\n"
        with pytest.raises(ClaimError, match=f"pid {holder.pid}"):
            probe(tree / "served")
    finally:
        holder.kill()
        holder.communicate()
    with TreeClaim(tree / "served"):  # no stale claim, no waiting
        pass
