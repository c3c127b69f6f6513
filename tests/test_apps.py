"""Real applications that keep their state in SQLite, on a real mount, with no lock timeout.

python-diskcache's counter and huey's SqliteHuey task queue, used as their documentation shows,
with SQLite's busy timeout 0: on a local disk both lose work ("database is locked" surfaces as
diskcache.Timeout, and as tasks huey never runs); on the mount nothing may be lost.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Mounted

pytestmark = pytest.mark.fuse

COUNTER_PROCESSES = 8
INCREMENTS = 500

COUNTER = """
import json, os, sys
import diskcache
cache = diskcache.Cache(sys.argv[1], timeout=0)
errors = {}
for i in range(int(sys.argv[2])):
    for step in (lambda: cache.incr("counter"), lambda: cache.set(f"{os.getpid()}-{i}", i)):
        try:
            step()
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
cache.close()
print(json.dumps(errors))
"""


def integrity(path: str) -> str:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def test_diskcache_counter_from_eight_processes(mounted: Mounted) -> None:
    directory = mounted.path("cache")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COUNTER, directory, str(INCREMENTS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(COUNTER_PROCESSES)
    ]
    outcomes = [(p.returncode, out, err) for p in procs for out, err in [p.communicate(timeout=300)]]
    assert [(code, err[-2000:]) for code, _, err in outcomes if code != 0 or err] == []
    assert [json.loads(out) for _, out, _ in outcomes] == [{}] * COUNTER_PROCESSES
    import diskcache  # the test's own reading, after every writer is gone

    with diskcache.Cache(directory) as cache:
        assert cache["counter"] == COUNTER_PROCESSES * INCREMENTS
        assert len(cache) == 1 + COUNTER_PROCESSES * INCREMENTS
    assert integrity(os.path.join(directory, "cache.db")) == "ok"


TASKS = 500
CONSUMERS = 4

HUEY_APP = """
import os
from huey import SqliteHuey

huey = SqliteHuey(filename=os.environ["HUEY_DB"], timeout=0)


@huey.task()
def record(n):
    # One line per run, appended: a task run twice shows up twice.
    with open(os.environ["HUEY_RUNS"], "a") as f:
        f.write(f"{n}\\n")
"""


def test_huey_consumers_run_every_task_exactly_once(mounted: Mounted, tmp_path: Path) -> None:
    (tmp_path / "hueyapp.py").write_text(HUEY_APP)
    runs = tmp_path / "runs"
    runs.touch()
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "HUEY_DB": mounted.path("huey.db"),
        "HUEY_RUNS": str(runs),
    }
    consumer = [
        str(Path(sys.executable).parent / "huey_consumer"),
        "hueyapp.huey",
        "-k",
        "process",
        "--delay",
        "0.01",
        "--max-delay",
        "0.2",
        "--no-periodic",
    ]
    logs = [tmp_path / f"consumer{i}.log" for i in range(CONSUMERS)]
    consumers = []
    for log in logs:
        with open(log, "w") as out:
            consumers.append(subprocess.Popen(consumer, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        producer = subprocess.run(
            [sys.executable, "-c", f"from hueyapp import record\nfor n in range({TASKS}): record(n)"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert producer.returncode == 0, producer.stderr[-2000:]
        deadline = time.monotonic() + 120
        while len(runs.read_text().split()) < TASKS and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # a task run twice would show up now
    finally:
        for c in consumers:
            c.send_signal(signal.SIGTERM)  # huey's graceful stop: running tasks finish
        for c in consumers:
            try:
                c.wait(timeout=30)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
    assert sorted(map(int, runs.read_text().split())) == list(range(TASKS))
    problems = [
        line
        for log in logs
        for line in log.read_text().splitlines()
        if "ERROR" in line or "Traceback" in line or "locked" in line
    ]
    assert problems == []
    assert integrity(mounted.path("huey.db")) == "ok"
