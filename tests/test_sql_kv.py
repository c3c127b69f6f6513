"""The KV store on real apsw connections: versions, preconditions, TTL, listing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoodydb.sql import errors, kv
from hoodydb.sql.connection import GuardedConnection, open_database
from hoodydb.sql.errors import SqlApiError
from hoodydb.sql.kv import Precondition

NONE = Precondition()


@pytest.fixture
def gc(tmp_path: Path) -> Iterator[GuardedConnection]:
    conn = open_database(tmp_path / "kv.db", create=True)
    yield conn
    conn.close()


def put(gc: GuardedConnection, key: str, value: object, *, now: float = 100.0, **kw: object) -> kv.Entry:
    precondition = kw.pop("precondition", NONE)
    ttl = kw.pop("ttl", None)
    entry, _ = kv.put(gc, key, json.dumps(value), now=now, ttl=ttl, precondition=precondition)  # type: ignore[arg-type]
    return entry


def test_get_on_a_fresh_database_creates_nothing(gc: GuardedConnection) -> None:
    assert kv.get(gc, "a", now=0) is None
    assert kv.list_entries(gc, prefix="", limit=10, after=None, now=0) == ([], None)
    assert gc.conn.execute("SELECT count(*) FROM sqlite_schema").fetchall() == [(0,)]


def test_set_get_and_versions_never_repeat(gc: GuardedConnection) -> None:
    first = put(gc, "k", {"a": [1, 2]})
    second = put(gc, "k", "v2")
    assert second.version > first.version
    got = kv.get(gc, "k", now=100)
    assert got is not None and json.loads(got.value_json) == "v2" and got.version == second.version
    kv.delete(gc, "k", now=100, precondition=NONE)
    third = put(gc, "k", 3)
    assert third.version > second.version  # no ABA: an old If-Match cannot match the new key


def test_preconditions(gc: GuardedConnection) -> None:
    entry = put(gc, "k", 1)
    with pytest.raises(SqlApiError) as info:
        put(gc, "k", 2, precondition=Precondition(match_versions=frozenset({entry.version + 7})))
    assert info.value.code == errors.PRECONDITION_FAILED
    put(gc, "k", 2, precondition=Precondition(match_versions=frozenset({entry.version})))
    with pytest.raises(SqlApiError):
        put(gc, "k", 3, precondition=Precondition(none_match_any=True))
    put(gc, "new", 3, precondition=Precondition(none_match_any=True))
    with pytest.raises(SqlApiError):
        put(gc, "absent", 1, precondition=Precondition(match_any=True))
    with pytest.raises(SqlApiError):
        kv.delete(gc, "k", now=100, precondition=Precondition(match_versions=frozenset({entry.version})))
    got = kv.get(gc, "k", now=100)
    assert got is not None and got.value_json == "2"


def test_ttl_expires_and_is_purged(gc: GuardedConnection) -> None:
    put(gc, "short", 1, ttl=5.0, now=100.0)
    assert kv.get(gc, "short", now=104.0) is not None
    assert kv.get(gc, "short", now=106.0) is None
    with pytest.raises(SqlApiError) as info:
        kv.delete(gc, "short", now=106.0, precondition=NONE)
    assert info.value.code == errors.NOT_FOUND
    put(gc, "other", 1, now=200.0)  # any write purges expired rows
    assert gc.conn.execute("SELECT key FROM hoodydb_kv").fetchall() == [("other",)]


def test_listing_with_prefix_and_cursor(gc: GuardedConnection) -> None:
    for key in ["a", "b/1", "b/2", "b/3", "b0", "c", "b\U0010ffffz"]:
        put(gc, key, key)
    page, cursor = kv.list_entries(gc, prefix="b/", limit=2, after=None, now=100)
    assert [e.key for e in page] == ["b/1", "b/2"] and cursor is not None
    page, cursor = kv.list_entries(gc, prefix="b/", limit=2, after=kv.decode_cursor(cursor), now=100)
    assert [e.key for e in page] == ["b/3"] and cursor is None
    everything, _ = kv.list_entries(gc, prefix="b", limit=100, after=None, now=100)
    assert [e.key for e in everything] == ["b/1", "b/2", "b/3", "b0", "b\U0010ffffz"]


@pytest.mark.parametrize("key", ["", "a\x00b", "x" * 5000])
def test_bad_keys(key: str) -> None:
    with pytest.raises(SqlApiError):
        kv.check_key(key)


def test_bad_cursor_and_limit(gc: GuardedConnection) -> None:
    with pytest.raises(SqlApiError):
        kv.decode_cursor("%%%")
    with pytest.raises(SqlApiError):
        kv.list_entries(gc, prefix="", limit=0, after=None, now=0)
