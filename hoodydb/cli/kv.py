"""`hoodydb kv set/get/delete/list`: the key-value store over the HTTP API."""

from __future__ import annotations

import click

from hoodydb.cli.http_options import api_options, db_option, echo_json, json_argument, reporting_errors
from hoodydb.client import HoodyClient


@click.group()
def kv() -> None:
    """JSON values by key, stored inside a database, through `hoodydb serve`."""


@kv.command("set")
@click.argument("key")
@db_option
@click.option("--body", required=True, help="The value as JSON; @FILE or - for stdin.")
@click.option("--ttl", type=click.FloatRange(min=0, min_open=True), help="Expire after this many seconds.")
@click.option("--if-match", help="Only if the current version (ETag) is this one.")
@click.option("--if-none-match", help="'*': only if the key does not exist yet.")
@api_options
def set_key(
    client: HoodyClient,
    key: str,
    db: str,
    body: str,
    ttl: float | None,
    if_match: str | None,
    if_none_match: str | None,
) -> None:
    """Set KEY; prints the new version."""
    value = json_argument(body, "--body")
    with reporting_errors():
        echo_json(client.kv_set(db, key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match))


@kv.command("get")
@click.argument("key")
@db_option
@api_options
def get_key(client: HoodyClient, key: str, db: str) -> None:
    """Print KEY's value as JSON (exit status 1 if it does not exist)."""
    with reporting_errors():
        value, _version = client.kv_get(db, key)
    echo_json(value)


@kv.command("delete")
@click.argument("key")
@db_option
@click.option("--if-match", help="Only if the current version (ETag) is this one.")
@api_options
def delete_key(client: HoodyClient, key: str, db: str, if_match: str | None) -> None:
    """Delete KEY."""
    with reporting_errors():
        echo_json(client.kv_delete(db, key, if_match=if_match))


@kv.command("list")
@db_option
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--limit", type=click.IntRange(1, 1000), help="Keys per page (server default 100).")
@click.option("--cursor", help="Continue after a previous page's nextCursor.")
@api_options
def list_keys(client: HoodyClient, db: str, prefix: str, limit: int | None, cursor: str | None) -> None:
    """List keys (with values and versions) in key order, one page at a time."""
    with reporting_errors():
        echo_json(client.kv_list(db, prefix=prefix, limit=limit, cursor=cursor))
