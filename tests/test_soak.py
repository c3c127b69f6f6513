"""Half a minute of the soak (bench/soak.py): writers of every kind killed at random, the mount
daemon killed and remounted three or so times, read-only auditors throughout.

The same code as the 30-minute run reported in docs/PERFORMANCE.md, only shorter and with the
daemon killed every ten seconds instead of every few minutes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import soak

pytestmark = [pytest.mark.fuse, pytest.mark.http]  # it starts `hoodydb serve` with its mount


def test_half_a_minute_of_kills_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    options = soak.SoakOptions(
        minutes=0.5, restart_every=(8.0, 12.0), outage=(0.3, 1.5), root=str(tmp_path), seed=12
    )
    result = soak.run(options, say=lambda _: None)
    text = soak.report(result)
    assert result.lost_count == 0, text
    assert result.final_checks == {db: "ok" for db in soak.DATABASES}, text
    assert not result.bad_snapshots, text
    assert not result.client_exits, text
    assert not result.unexpected_errors, text
    assert result.passed, text
    # The run did what it claims: every kind committed, was killed, and was audited.
    assert result.daemon_kills >= 2, text
    assert sum(result.writer_kills.values()) >= 10, text
    assert set(result.acknowledged) == set(soak.WRITERS), text
    assert min(result.acknowledged.values()) > 20, text
    assert all(result.committed_by_db[db] >= result.acknowledged_by_db[db] > 0 for db in soak.DATABASES)
    audited = {f"{kind} {db}" for kind in soak.AUDITORS for db in soak.DATABASES}
    assert set(result.auditor_checks) == audited, text


def test_half_a_minute_beside_two_cpu_hogs_gives_no_error(tmp_path: Path) -> None:
    """A busy host (`python -m bench.soak --cpu-hogs 2`): a sleeping client may only be waiting for
    a program that waits for a CPU. No client may see an error it would not see on a quiet host."""
    options = soak.SoakOptions(
        minutes=0.5, restart_every=(20.0, 25.0), outage=(0.3, 1.0), root=str(tmp_path), seed=7, cpu_hogs=2
    )
    result = soak.run(options, say=lambda _: None)
    text = soak.report(result)
    assert not result.unexpected_errors, text
    assert result.lost_count == 0, text
    assert result.final_checks == {db: "ok" for db in soak.DATABASES}, text
    assert result.passed, text
    assert set(result.acknowledged) == set(soak.WRITERS), text
    assert result.hog_cpu_seconds > 10, text  # the hogs did load the host
