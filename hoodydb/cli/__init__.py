"""The `hoodydb` command. Each subcommand lives in its own module and stays a thin shell over the library."""

from __future__ import annotations

import click

from hoodydb import __version__
from hoodydb.cli.backup import backup, restore
from hoodydb.cli.db import db
from hoodydb.cli.kv import kv
from hoodydb.cli.mount import locks, mount
from hoodydb.cli.serve import serve
from hoodydb.cli.token import token
from hoodydb.cli.watch import watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hoodydb")
def main() -> None:
    """Safe concurrent SQLite for many processes: a FUSE mount and an HTTP API over the same files."""


main.add_command(mount)
main.add_command(locks)
main.add_command(watch)
main.add_command(serve)
main.add_command(db)
main.add_command(kv)
main.add_command(token)
main.add_command(restore)
main.add_command(backup)
