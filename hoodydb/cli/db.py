"""`hoodydb db exec-transaction` and `hoodydb db create`: SQL over the HTTP API."""

from __future__ import annotations

from typing import Any

import click

from hoodydb.cli.http_options import api_options, db_option, echo_json, json_argument, reporting_errors
from hoodydb.client import HoodyClient


@click.group()
def db() -> None:
    """Databases and SQL transactions, through `hoodydb serve`."""


@db.command("exec-transaction")
@db_option
@click.option(
    "--transaction",
    "transaction_json",
    required=True,
    help='Items as JSON, [{"statement": ...}, {"query": ...}] or {"transaction": [...]}; @FILE, - (stdin).',
)
@click.option(
    "--result-format", type=click.Choice(["map", "list"]), help="Rows as objects (map) or arrays (list)."
)
@api_options
def exec_transaction(client: HoodyClient, db: str, transaction_json: str, result_format: str | None) -> None:
    """Run the items as one transaction; print the results as JSON."""
    parsed: Any = json_argument(transaction_json, "--transaction")
    if isinstance(parsed, dict) and "transaction" in parsed:
        result_format = result_format or parsed.get("resultFormat")
        parsed = parsed["transaction"]
    with reporting_errors():
        echo_json(client.exec_transaction(db, parsed, result_format=result_format))


@db.command("create")
@click.option("--path", required=True, help="Where to create the database, under the served root.")
@api_options
def create(client: HoodyClient, path: str) -> None:
    """Create an empty database."""
    with reporting_errors():
        echo_json(client.create_database(path))
