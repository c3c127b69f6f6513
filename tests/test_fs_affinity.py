"""ContentionPin: the daemon's threads go to one CPU while requests wait, and back after."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hoodydb.fs.affinity import ContentionPin


def _thread_cpus(pid: int | str = "self") -> list[set[int]]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out.append(_parse_cpu_list(line.split()[1]))
    return out


def _parse_cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def _eventually(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def test_pins_every_thread_while_requests_wait_and_lets_go_when_idle() -> None:
    everything = os.sched_getaffinity(0)
    assert len(everything) > 1, "the test machine has 2 CPUs; one CPU has nothing to pin"
    waits = 0
    stop = threading.Event()
    bystander = threading.Thread(target=stop.wait)  # a thread that was there before the pin
    bystander.start()
    pin = ContentionPin(lambda: waits, lambda: 0, interval=0.01, idle_seconds=0.5)
    pin.start()
    try:
        time.sleep(0.05)
        assert not pin.pinned, "no request has waited yet"
        waits = 1
        assert _eventually(lambda: pin.pinned, 2)
        assert all(cpus == {max(everything)} for cpus in _thread_cpus()), _thread_cpus()
        for n in range(2, 12):  # contention goes on: the pin stays
            waits = n
            time.sleep(0.03)
            assert pin.pinned
        assert _eventually(lambda: not pin.pinned, 2), "idle for longer than idle_seconds"
        assert all(cpus == everything for cpus in _thread_cpus()), _thread_cpus()
    finally:
        pin.close()
        stop.set()
        bystander.join()
    assert os.sched_getaffinity(0) == everything


def test_close_while_pinned_restores_every_cpu() -> None:
    everything = os.sched_getaffinity(0)
    waits = 0
    pin = ContentionPin(lambda: waits, lambda: 0, interval=0.01, idle_seconds=60)
    pin.start()
    waits = 1
    assert _eventually(lambda: pin.pinned, 2)
    pin.close()
    assert not pin.pinned
    assert all(cpus == everything for cpus in _thread_cpus())


def test_stays_pinned_while_requests_are_still_waiting() -> None:
    """No new waits, but 200 requests parked behind a long transaction: still contention."""
    waits, waiting = 0, 0
    pin = ContentionPin(lambda: waits, lambda: waiting, interval=0.01, idle_seconds=0.1)
    pin.start()
    try:
        waits, waiting = 1, 200
        assert _eventually(lambda: pin.pinned, 2)
        time.sleep(0.4)
        assert pin.pinned
        waiting = 0
        assert _eventually(lambda: not pin.pinned, 2)
    finally:
        pin.close()


def test_a_cpu_the_system_refuses_leaves_every_thread_as_it_was() -> None:
    everything = os.sched_getaffinity(0)
    waits = 0
    pin = ContentionPin(lambda: waits, lambda: 0, interval=0.01)
    pin._one = {4095}  # not a CPU of this machine: sched_setaffinity says EINVAL
    pin.start()
    waits = 1
    pin._thread.join(2)
    assert not pin._thread.is_alive(), "gives up for good, quietly"
    assert not pin.pinned
    pin.close()
    assert all(cpus == everything for cpus in _thread_cpus())
