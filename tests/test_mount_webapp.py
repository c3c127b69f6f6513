"""The web application bench (bench/webapp.py) with small counts: native disk and a real mount,
both journal modes, busy timeout 0 and 5 s. Every run keeps its invariant (successful updates ==
the increments in the table, integrity ok), and the mount's workers get no error at all.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench import webapp
from bench.targets import Target
from tests.conftest import Mounted

SMALL = webapp.Counts(workers=4, seconds=0.3)


def test_the_check_catches_a_lost_update(tmp_path: Path) -> None:
    db = str(tmp_path / "webapp.db")
    run = webapp.run_one(db, "wal", 5.0, webapp.WRITE_SHARE, SMALL)
    assert run.check == "ok" and run.updates > 0 and run.latencies, run
    claimed = run.updates + 1  # one update claimed that the table does not hold
    assert (
        webapp.check(db, claimed) == f"sum of v - initial v is {run.updates} for {claimed} successful updates"
    )
    broken = webapp.Run("wal", 5.0, webapp.WRITE_SHARE, 1, [0.001], Counter(), Counter(), 1.0, "lost")
    alone = webapp.Run("wal", 5.0, 0.0, 0, [0.001], Counter(), Counter(), 1.0, "ok")
    assert webapp.failures({("wal", 5.0, "native"): (broken, alone)}) == [
        "native, wal, busy timeout 5 s, mix: lost"
    ]


def test_webapp_cells_keep_every_update_and_the_mount_has_no_errors(mounted: Mounted, tmp_path: Path) -> None:
    (tmp_path / "native").mkdir()
    targets = {
        "native": Target("native", tmp_path / "native"),
        "mount": Target("mount", mounted.mnt, mounted.process.pid),
    }
    results = webapp.run(targets, SMALL)
    text = webapp.table(results) + "\n" + webapp.error_notes(results)
    assert webapp.failures(results) == [], text
    assert len(results) == len(webapp.MODES) * len(webapp.BUSY_TIMEOUTS) * len(targets), text
    for (_, _, name), (mix, alone) in results.items():
        assert mix.updates > 0 and mix.latencies and alone.latencies and alone.updates == 0, text
        if name == "mount":
            assert not (mix.read_errors or mix.write_errors or alone.read_errors), text
            # The mount reports how long its turn was held: some of the run, and at most all of it
            # (a turn begun before the run's start may end inside it: a little slack).
            assert mix.turn_busy is not None and 0 < mix.turn_busy <= 1.05, text
        else:
            assert mix.turn_busy is None and alone.turn_busy is None, text
    assert text.count("| mount |") == len(webapp.MODES) * len(webapp.BUSY_TIMEOUTS), text
