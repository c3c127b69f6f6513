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


ENVIRONMENT = """\
## Environment variables

Every option of `hoodydb mount` and `hoodydb serve`, and the connection options of the client
commands (`--url`, `--token`, `--timeout`), is also an environment variable: the option's name in
capitals with the prefix `HOODYDB_` (`--lock-timeout 5` is `HOODYDB_LOCK_TIMEOUT=5`). Each is
listed beside its option below, as `[env var: …]`.

- **Precedence**: a flag beats the environment, which beats the default.
  `HOODYDB_LOCK_TIMEOUT=5 hoodydb serve … --lock-timeout 10` waits 10 s.
- **Lists**: a repeatable option's variable is in the plural and holds a comma-separated list:
  `HOODYDB_TOKENS=a,b`, `HOODYDB_ROOTS=/srv/a,/srv/b`, `HOODYDB_CORS_ORIGINS=https://a.example`.
  The option on the command line replaces the list; it does not add to it.
- **Switches** take `1`/`0`, `true`/`false`, `yes`/`no` or `on`/`off`: `HOODYDB_KERNEL_CACHE=0`.
- **The mount's options** are the same for `hoodydb mount` and `hoodydb serve`, which passes every
  one of them to its mount, so one environment (a systemd unit's `Environment=`, a container's
  `-e`) configures both. The daemon reports what it runs with: `hoodydb locks --json`, `settings`.
- **Logging**: `HOODYDB_LOG_LEVEL` (`--log-level`) applies to `serve` and to the mount alike;
  messages go to stderr, a detached mount's to the log file it names when it starts.
- **Client commands** read `HOODYDB_URL` and `HOODYDB_TOKEN` (one token), the names the
  JavaScript client reads too.
- **`HOODYDB_RUNTIME_DIR`** is no option: the directory of the mounts' control sockets and of a
  detached mount's log. Default `/run/hoodydb` for root, else `$XDG_RUNTIME_DIR/hoodydb`, else
  `/tmp/hoodydb-UID`. `hoodydb locks` and `serve`'s `/locks` look for mounts there, so give every
  command the same value. It must be the user's own and writable by nobody else (a mount refuses
  one that is not): the sockets in it are trusted.
- The arguments of a single request or report (`--db`, `--body`, `--json`, …) have no variable.
"""


def render() -> str:
    parts = [
        "# Command reference",
        "",
        "Generated from `--help` by `python docs/gen_cli.py > docs/cli.md`.",
        "",
        ENVIRONMENT,
    ]
    top = click.Context(main, info_name="hoodydb")
    parts += ["## hoodydb", "", "```", main.get_help(top), "```", ""]
    for path, command in commands(main, ["hoodydb"]):
        ctx = click.Context(command, info_name=" ".join(path))
        parts += [f"## {' '.join(path)}", "", "```", command.get_help(ctx), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
