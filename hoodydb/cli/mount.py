"""`hoodydb mount` and `hoodydb locks`."""

from __future__ import annotations

import click


@click.command()
@click.argument("backing", type=click.Path(file_okay=False))
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--foreground", is_flag=True, help="Stay in the foreground (default: detach once mounted).")
def mount(backing: str, mountpoint: str, foreground: bool) -> None:
    """Mount BACKING at MOUNTPOINT with concurrent-write safety for SQLite files."""
    raise click.ClickException("not implemented yet")


@click.command()
@click.argument("mountpoint", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def locks(mountpoint: str | None, as_json: bool) -> None:
    """Show, per database, who is admitted, who waits, and counters."""
    raise click.ClickException("not implemented yet")
