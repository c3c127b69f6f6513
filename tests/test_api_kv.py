"""The KV routes through a real `hoodydb serve`: JSON round trips, ETags, preconditions, TTL, listing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from serve_process import ServeProcess

KV = "/api/v1/sqlite/kv"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("kvroot")
    with ServeProcess(["--no-mount", "--root", str(root)], root.parent) as server:
        assert server.client.post("/api/v1/sqlite/databases", json={"path": "kv.db"}).status_code == 201
        yield server


def key_url(key: str) -> str:
    # Every byte but unreserved ones percent-encoded, dots too, so no client or proxy resolves
    # "." or ".." path segments before the server sees them.
    return f"{KV}/{quote(key, safe='').replace('.', '%2E')}"


def put(api: ServeProcess, key: str, value: Any, **kw: Any) -> Any:
    params = {"db": "kv.db", **kw.pop("params", {})}
    return api.client.put(key_url(key), params=params, content=json.dumps(value).encode(), **kw)


def get(api: ServeProcess, key: str, **kw: Any) -> Any:
    return api.client.get(key_url(key), params={"db": "kv.db"}, **kw)


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    "value", [{"a": [1, 2.5, None, True]}, "text", 0, -7.25, None, [], {"nested": {"deep": ["é", "😀"]}}]
)
def test_set_then_get_returns_the_same_json(api: ServeProcess, value: Any) -> None:
    assert put(api, "round-trip", value).status_code in (200, 201)
    response = get(api, "round-trip")
    assert response.status_code == 200 and response.json() == value
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    "key", ["with/slash", "spaces and ?&=#", "ünïcødé ✓", "..", ".", "a/../b", "%2F", "+plus"]
)
def test_any_utf8_key(api: ServeProcess, key: str) -> None:
    assert put(api, key, {"k": key}).status_code == 201
    assert get(api, key).json() == {"k": key}
    listed = api.client.get(KV, params={"db": "kv.db", "prefix": key}).json()["items"]
    assert listed[0]["key"] == key


def test_create_replace_etag_and_preconditions(api: ServeProcess) -> None:
    created = put(api, "doc", {"v": 1})
    assert created.status_code == 201
    version = created.json()["version"]
    assert created.headers["etag"] == f'"{version}"'
    replaced = put(api, "doc", {"v": 2}, headers={"If-Match": f'"{version}"'})
    assert replaced.status_code == 200 and replaced.json()["version"] > version
    # A stale version: 412, and the value stays.
    assert_error(put(api, "doc", {"v": 3}, headers={"If-Match": f'"{version}"'}), 412, "precondition_failed")
    assert_error(put(api, "doc", {"v": 3}, headers={"If-Match": "garbage"}), 412, "precondition_failed")
    assert_error(put(api, "doc", {"v": 3}, headers={"If-None-Match": "*"}), 412, "precondition_failed")
    assert_error(put(api, "absent-doc", 1, headers={"If-Match": "*"}), 412, "precondition_failed")
    assert put(api, "only-once", 1, headers={"If-None-Match": "*"}).status_code == 201
    current = get(api, "doc")
    assert current.json() == {"v": 2}
    assert get(api, "doc", headers={"If-None-Match": current.headers["etag"]}).status_code == 304
    stale_delete = api.client.delete(
        key_url("doc"), params={"db": "kv.db"}, headers={"If-Match": f'"{version}"'}
    )
    assert_error(stale_delete, 412, "precondition_failed")
    deleted = api.client.delete(
        key_url("doc"), params={"db": "kv.db"}, headers={"If-Match": current.headers["etag"]}
    )
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert_error(get(api, "doc"), 404, "not_found")
    assert_error(api.client.delete(key_url("doc"), params={"db": "kv.db"}), 404, "not_found")


def test_ttl(api: ServeProcess) -> None:
    response = put(api, "short-lived", "x", params={"ttl": "0.5"})
    assert response.status_code == 201 and response.json()["expiresAt"] > time.time()
    assert "x-hoodydb-expires-at" in get(api, "short-lived").headers
    time.sleep(0.7)
    assert_error(get(api, "short-lived"), 404, "not_found")
    for bad in ["0", "-1", "abc", "nan", "inf", "1e12"]:
        assert_error(put(api, "short-lived", "x", params={"ttl": bad}), 400, "bad_request")


def test_listing_pages_with_prefix_limit_and_cursor(api: ServeProcess) -> None:
    keys = [f"list/{i:03d}" for i in range(25)]
    for key in keys:
        put(api, key, {"n": key})
    put(api, "listing-other", 1)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"db": "kv.db", "prefix": "list/", "limit": "10"} | ({"cursor": cursor} if cursor else {})
        page = api.client.get(KV, params=params).json()
        seen += [item["key"] for item in page["items"]]
        assert all(item["value"] == {"n": item["key"]} for item in page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == keys


@pytest.mark.parametrize(
    ("params", "code"),
    [({"limit": "0"}, "bad_request"), ({"limit": "x"}, "bad_request"), ({"cursor": "!!"}, "bad_request")],
)
def test_bad_listing_parameters(api: ServeProcess, params: dict[str, str], code: str) -> None:
    assert_error(api.client.get(KV, params={"db": "kv.db", **params}), 400, code)


def test_kv_error_paths(api: ServeProcess, tmp_path: Path) -> None:
    assert_error(api.client.put(key_url("k"), params={"db": "kv.db"}, content=b"{nope"), 400, "bad_json")
    assert_error(api.client.put(key_url("k"), params={"db": "kv.db"}, content=b""), 400, "bad_json")
    assert_error(api.client.put(key_url("k"), params={"db": "missing.db"}, json=1), 404, "db_not_found")
    assert_error(api.client.get(key_url("k"), params={"db": "../x.db"}), 400, "path_outside_roots")
    assert_error(api.client.get(key_url("k")), 400, "bad_request")
    assert_error(api.client.put(key_url("x" * 5000), params={"db": "kv.db"}, json=1), 400, "bad_request")
    assert_error(api.client.put(key_url("nul\x00"), params={"db": "kv.db"}, json=1), 400, "bad_request")


def test_kv_lives_in_the_database_for_sql_too(api: ServeProcess) -> None:
    put(api, "visible", {"via": "kv"})
    response = api.client.post(
        "/api/v1/sqlite/db",
        params={"db": "kv.db"},
        json={"transaction": [{"query": "SELECT value FROM hoodydb_kv WHERE key = 'visible'"}]},
    )
    assert response.json()["results"][0]["resultSet"] == [{"value": '{"via":"kv"}'}]
