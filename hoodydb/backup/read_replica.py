"""A read replica on another host: a database opened read-only straight from its replica, following
the live one, through Litestream's VFS (the `litestream-vfs` package: `pip install
'hoodydb[read-replica]'`).

The VFS is a SQLite extension written in Go: apsw (which hoodydb uses, and whose SQLite can load
extensions, unlike many builds of Python's `sqlite3`) loads it, and it registers a VFS named
"litestream" that reads pages from the replica and polls it for new transactions every second. It
takes the database's replica URL from `LITESTREAM_REPLICA_URL` as the process STARTED with (Go
reads the environment once, at its start: setting it later from Python is not seen), so a process
follows one database; `follower_env` gives the environment to start it with.
"""

from __future__ import annotations

import os

import apsw

from hoodydb.backup.litestream_config import check_url, database_url

VFS_NAME = "litestream"
URL_VARIABLE = "LITESTREAM_REPLICA_URL"
# SQLite unloads an extension when the connection that loaded it closes: this one stays open.
_loader: list[apsw.Connection] = []


class ReadReplicaError(Exception):
    pass


def follower_env(replica: str, name: str) -> dict[str, str]:
    """The environment of a process that follows database `name` ("team/app.db") of the replica
    URL `replica` (as given to `--replica`)."""
    return {**os.environ, URL_VARIABLE: database_url(check_url(replica), name)}


def open_read_replica() -> apsw.Connection:
    """A read-only connection to the database named by `LITESTREAM_REPLICA_URL`. Its reads see the
    replica as Litestream's VFS last polled it, about a second behind what was replicated."""
    try:
        import litestream_vfs  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise ReadReplicaError(
            "a read replica needs litestream-vfs: pip install 'hoodydb[read-replica]'"
        ) from None
    url = os.environ.get(URL_VARIABLE)
    if not url:
        raise ReadReplicaError(
            f"start this process with {URL_VARIABLE} set to the database's replica URL "
            "(hoodydb.backup.read_replica.follower_env)"
        )
    if VFS_NAME not in apsw.vfs_names():
        loader = apsw.Connection(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(litestream_vfs.loadable_path())
        _loader.append(loader)
    return apsw.Connection(
        url.rsplit("/", 1)[-1].split("?")[0], vfs=VFS_NAME, flags=apsw.SQLITE_OPEN_READONLY
    )
