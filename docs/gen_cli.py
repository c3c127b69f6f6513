"""Write docs/cli.md from the commands' own --help: `python docs/gen_cli.py > docs/cli.md`.

tests/test_docs.py checks that the file is current, so the reference cannot drift.
"""

from __future__ import annotations

import click

from hoodydb.cli import main


def commands(group: click.Group, prefix: list[str]) -> list[tuple[list[str], click.Command]]:
    found: list[tuple[list[str], click.Command]] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        found.append(([*prefix, name], command))
        if isinstance(command, click.Group):
            found += commands(command, [*prefix, name])
    return found


def render() -> str:
    parts = [
        "# Command reference",
        "",
        "Generated from `--help` by `python docs/gen_cli.py > docs/cli.md`.",
        "",
    ]
    top = click.Context(main, info_name="hoodydb")
    parts += ["## hoodydb", "", "```", main.get_help(top), "```", ""]
    for path, command in commands(main, ["hoodydb"]):
        ctx = click.Context(command, info_name=" ".join(path))
        parts += [f"## {' '.join(path)}", "", "```", command.get_help(ctx), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
