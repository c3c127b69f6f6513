"""The commit feed's bookkeeping (hoodydb/fs/feed.py): numbering, persistence, cursors, bounds."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from hoodydb.cli.watch import format_event
from hoodydb.fs.feed import SEQUENCE_FILE, Commit, CommitFeed, Missed


def publish(feed: CommitFeed, db: str, n: int = 1) -> list[Commit]:
    return [feed.publish(db, pid=1, command="x", pages=1, journal="wal", at=time.time()) for _ in range(n)]


def test_numbers_grow_by_one_per_database(tmp_path: Path) -> None:
    feed = CommitFeed(tmp_path)
    assert [c.seq for c in publish(feed, "a.db", 3)] == [1, 2, 3]
    assert [c.seq for c in publish(feed, "b.db", 2)] == [1, 2]
    assert feed.positions("*") == {"a.db": 3, "b.db": 2}


def test_a_clean_restart_continues_and_a_crash_never_goes_back(tmp_path: Path) -> None:
    feed = CommitFeed(tmp_path, block=10)
    publish(feed, "a.db", 3)
    feed.close()
    assert json.loads((tmp_path / SEQUENCE_FILE).read_text()) == {"a.db": 3}
    again = CommitFeed(tmp_path, block=10)
    assert publish(again, "a.db")[0].seq == 4  # no gap after a clean stop
    publish(again, "a.db", 12)  # 16: crosses the ceiling 14 once more
    # A crash: nothing written at exit; the next daemon starts at the last ceiling, above 16.
    crashed = CommitFeed(tmp_path, block=10)
    assert publish(crashed, "a.db")[0].seq > 16


def test_the_ceiling_is_written_once_per_block(tmp_path: Path) -> None:
    feed = CommitFeed(tmp_path, block=100)
    path = tmp_path / SEQUENCE_FILE
    publish(feed, "a.db")  # 1 reserves up to 101
    assert json.loads(path.read_text()) == {"a.db": 101}
    path.unlink()
    publish(feed, "a.db", 100)  # 2..101: under the ceiling, nothing written
    assert not path.exists()
    publish(feed, "a.db")  # 102 reserves the next block
    assert json.loads(path.read_text()) == {"a.db": 202}


def test_subscribers_see_only_their_databases_in_order(tmp_path: Path) -> None:
    feed = CommitFeed(tmp_path)
    sub = feed.subscribe("team/*")
    publish(feed, "team/a.db", 2)
    publish(feed, "other.db")
    publish(feed, "team/b.db")
    got = feed.take(sub, 1.0)
    assert got is not None
    assert [(c.db, c.seq) for c in got if isinstance(c, Commit)] == [
        ("team/a.db", 1),
        ("team/a.db", 2),
        ("team/b.db", 1),
    ]
    assert feed.take(sub, 0.05) == []  # nothing new: a heartbeat's timeout


def test_resume_from_a_number_or_a_cursor(tmp_path: Path) -> None:
    feed = CommitFeed(tmp_path)
    publish(feed, "a.db", 5)
    publish(feed, "b.db", 2)
    by_number = feed.subscribe("a.db", 3)
    assert [c.seq for c in feed.take(by_number, 1.0) or []] == [4, 5]
    by_cursor = feed.subscribe("*", {"a.db": 4})  # b.db not named: from its first kept commit
    got = feed.take(by_cursor, 1.0) or []
    assert [(c.db, c.seq) for c in got if isinstance(c, Commit)] == [("a.db", 5), ("b.db", 1), ("b.db", 2)]


def test_a_subscriber_that_fell_behind_the_ring_is_told_what_it_missed(tmp_path: Path) -> None:
    feed = CommitFeed(tmp_path, history=10)
    sub = feed.subscribe("a.db")
    publish(feed, "a.db", 25)
    got = feed.take(sub, 1.0) or []
    assert got[0] == Missed("a.db", 1, 15)
    assert [c.seq for c in got[1:] if isinstance(c, Commit)] == list(range(16, 26))


def test_idle_subscribers_are_not_woken_by_other_databases(tmp_path: Path) -> None:
    feed = CommitFeed(tmp_path)
    subs = [feed.subscribe("quiet.db") for _ in range(100)]
    for sub in subs:
        assert feed.take(sub, 0.01) == []  # the first look (subscribe wakes once)
    publish(feed, "busy.db", 50)
    assert not any(sub.wake.is_set() for sub in subs)
    publish(feed, "quiet.db")
    assert all(sub.wake.is_set() for sub in subs)


def test_close_ends_every_subscription(tmp_path: Path) -> None:
    feed = CommitFeed(tmp_path)
    sub = feed.subscribe("*")
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(list(feed.events(sub, 10.0))))
    t.start()
    time.sleep(0.05)
    feed.close()
    t.join(5)
    assert result == [[]]


def test_histories_are_kept_for_the_most_recent_databases_only(tmp_path: Path) -> None:
    feed = CommitFeed(tmp_path, max_histories=3)
    sub = feed.subscribe("*", {"a.db": 0})
    publish(feed, "a.db", 2)
    for name in ("b.db", "c.db", "d.db"):  # a.db's history goes, its numbers stay
        publish(feed, name)
    assert publish(feed, "a.db")[0].seq == 3
    got = feed.take(sub, 1.0) or []
    assert got[0] == Missed("a.db", 1, 2)


def test_a_database_whose_file_is_gone_is_forgotten_at_close(tmp_path: Path) -> None:
    (tmp_path / "kept.db").write_bytes(b"")
    feed = CommitFeed(tmp_path / ".hoodydb", root=tmp_path)
    publish(feed, "kept.db", 2)
    publish(feed, "gone.db", 2)
    feed.close()
    assert json.loads((tmp_path / ".hoodydb" / SEQUENCE_FILE).read_text()) == {"kept.db": 2}


def test_watch_lines_name_the_token_of_an_api_commit_and_only_then() -> None:
    native = Commit("app.db", 7, 0.0, 4711, "python worker.py", 3, "wal").as_dict()
    api = Commit("app.db", 8, 0.0, 4242, "hoodydb serve", 1, "wal", token="ingest").as_dict()
    assert native["token"] is None and api["token"] == "ingest"
    native_line, api_line = format_event(native), format_event(api)
    assert native_line is not None and api_line is not None
    assert native_line.endswith("app.db  #7  3 pages  pid 4711  python worker.py")
    assert api_line.endswith("app.db  #8  1 pages  pid 4242  hoodydb serve  (token ingest)")
    assert format_event(Missed("app.db", 3, 5).as_dict()) == "missed 3 commits of app.db (#3..#5)"
