"""The docs keep up with the code: the CLI reference is generated, and every command is in it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    expected = load_generator().render()
    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == expected, "docs/cli.md is stale: run `python docs/gen_cli.py > docs/cli.md`"


def test_every_command_is_in_the_readme() -> None:
    from hoodydb.cli import main

    gen = load_generator()
    readme = (ROOT / "README.md").read_text()
    for path, command in gen.commands(main, ["hoodydb"]):
        if command.__class__.__name__ != "Group":
            assert " ".join(path) in readme or f"`{' '.join(path[1:])}" in readme, path


def test_readme_starts_with_the_two_commands() -> None:
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    assert lines[1] == "```sh"
    assert lines[2].startswith("make run")
    assert lines[3].startswith("make test")
    assert lines[4] == "```"
