"""How the soak (bench/soak.py) tells an error caused by its own daemon kills from a finding."""

from __future__ import annotations

from bench.soak import Outage, _during_outage

# From a failing run of tests/test_soak.py: a Python writer's connection opened 0.3 s after the
# daemon was killed (on the mount the old `serve` put back at once, which the new `serve` then
# stopped as an orphan), and "locking protocol" 11 s later, after SQLite's read-start retries.
OUTAGES = [Outage(682.223, 684.409), Outage(693.758, 696.213)]


def test_a_connection_opened_while_the_mount_was_replaced_fails_as_an_outage() -> None:
    assert _during_outage(693.506, 682.530, OUTAGES)


def test_errors_on_a_healthy_mount_stay_findings() -> None:
    assert not _during_outage(690.0, 685.0, OUTAGES)  # opened after the remount, failed before the next kill
    assert not _during_outage(690.0, 600.0, [])


def test_errors_while_down_or_on_a_connection_into_the_killed_mount_are_outages() -> None:
    assert _during_outage(683.0, 685.0, OUTAGES)  # while down
    assert _during_outage(685.2, 690.0, OUTAGES)  # within the grace after the remount
    assert _during_outage(700.0, 690.0, OUTAGES)  # opened before the second kill
