"""`hoodydb db` and `hoodydb kv` run against a real `hoodydb serve`: JSON out, errors on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_process import ServeProcess


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("cliroot")
    with ServeProcess(["--no-mount", "--root", str(root)], root.parent) as server:
        yield server


def hoodydb(api: ServeProcess, *args: str, token: str | None = None, stdin: str | None = None) -> Any:
    env = {"HOODYDB_URL": api.url, "HOODYDB_TOKEN": token or api.token or "", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "hoodydb", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def ok(api: ServeProcess, *args: str, stdin: str | None = None) -> Any:
    result = hoodydb(api, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_seed_flow_through_the_cli(api: ServeProcess, tmp_path: Path) -> None:
    assert ok(api, "db", "create", "--path", "cli.db") == {"path": "cli.db", "created": True}
    items = [
        {"statement": "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)"},
        {"statement": "INSERT INTO people (name) VALUES (:name)", "values": {"name": "Ada"}},
    ]
    results = ok(api, "db", "exec-transaction", "--db", "cli.db", "--transaction", json.dumps(items))[
        "results"
    ]
    assert [r["success"] for r in results] == [True, True]
    query = json.dumps({"transaction": [{"query": "SELECT name FROM people"}], "resultFormat": "list"})
    (listed,) = ok(api, "db", "exec-transaction", "--db", "cli.db", "--transaction", query)["results"]
    assert listed["resultSet"] == [["Ada"]] and listed["resultHeaders"] == ["name"]
    (from_stdin,) = ok(api, "db", "exec-transaction", "--db", "cli.db", "--transaction", "-", stdin=query)[
        "results"
    ]
    assert from_stdin == listed
    file = tmp_path / "tx.json"
    file.write_text(query)
    (from_file,) = ok(api, "db", "exec-transaction", "--db", "cli.db", "--transaction", f"@{file}")["results"]
    assert from_file == listed


def test_kv_set_get_list_delete(api: ServeProcess) -> None:
    ok(api, "db", "create", "--path", "clikv.db")
    value = {"hello": ["wörld", 1, None]}
    created = ok(api, "kv", "set", "greeting/one", "--db", "clikv.db", "--body", json.dumps(value))
    assert created["key"] == "greeting/one" and created["version"] >= 1
    assert ok(api, "kv", "get", "greeting/one", "--db", "clikv.db") == value
    ok(api, "kv", "set", "greeting/two", "--db", "clikv.db", "--body", "2", "--if-none-match", "*")
    listed = ok(api, "kv", "list", "--db", "clikv.db", "--prefix", "greeting/", "--limit", "1")
    assert [i["key"] for i in listed["items"]] == ["greeting/one"] and listed["nextCursor"]
    rest = ok(
        api, "kv", "list", "--db", "clikv.db", "--prefix", "greeting/", "--cursor", listed["nextCursor"]
    )
    assert [i["key"] for i in rest["items"]] == ["greeting/two"]
    assert ok(api, "kv", "delete", "greeting/one", "--db", "clikv.db")["deleted"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kv", "get", "absent", "--db", "clikv2.db"], "db_not_found"),
        (
            ["db", "exec-transaction", "--db", "../x.db", "--transaction", '[{"query": "SELECT 1"}]'],
            "path_outside_roots",
        ),
        (["db", "exec-transaction", "--db", "x.db", "--transaction", "{nope"], "not valid JSON"),
        (["kv", "set", "k", "--db", "x.db", "--body", "{nope"], "not valid JSON"),
        (["db", "create", "--path", "../escape.db"], "path_outside_roots"),
    ],
)
def test_failures_exit_non_zero_with_the_message_on_stderr(
    api: ServeProcess, args: list[str], message: str
) -> None:
    result = hoodydb(api, *args)
    assert result.returncode != 0 and result.stdout == ""
    assert message in result.stderr


def test_item_errors_name_the_item(api: ServeProcess) -> None:
    ok(api, "db", "create", "--path", "clierr.db")
    items = json.dumps([{"query": "SELECT 1"}, {"statement": "INSERT INTO nope VALUES (1)"}])
    result = hoodydb(api, "db", "exec-transaction", "--db", "clierr.db", "--transaction", items)
    assert result.returncode == 1 and "at item 1" in result.stderr and "sql_error" in result.stderr


def test_kv_get_of_a_missing_key(api: ServeProcess) -> None:
    ok(api, "db", "create", "--path", "clikv3.db")
    result = hoodydb(api, "kv", "get", "absent", "--db", "clikv3.db")
    assert result.returncode == 1 and "not_found" in result.stderr


def test_wrong_token_and_unreachable_server(api: ServeProcess) -> None:
    result = hoodydb(api, "kv", "list", "--db", "x.db", token="wrong")
    assert result.returncode == 1 and "unauthorized" in result.stderr
    result = hoodydb(api, "kv", "list", "--db", "x.db", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1 and "cannot reach" in result.stderr


def test_every_http_command_is_documented() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "http-api.md").read_text()
    for command in ["db exec-transaction", "db create", "kv set", "kv get", "kv delete", "kv list", "serve"]:
        assert f"hoodydb {command}" in doc
