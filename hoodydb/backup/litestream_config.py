"""The replica URL a user gives, each database's own place under it, and Litestream's config file.

`--replica s3://bucket/prefix?endpoint=http://minio:9000&forcePathStyle=true` holds every
database of the tree: `team/app.db` goes to `s3://bucket/prefix/team/app.db?...`, so a restore
names the database as the tree does. Credentials come from the usual variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION for S3), which Litestream reads itself: never written to a file.

The config is written as JSON, which YAML reads as it is: no YAML library needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

# Litestream 0.5's replica types (its replica_url.go), by URL scheme.
SCHEMES = frozenset({"file", "s3", "gs", "abs", "sftp", "webdav", "webdavs", "nats", "oss"})

# Litestream's own tables and side directory, which the daemon must not report as databases.
META_SUFFIX = "-litestream"


class ReplicaUrlError(ValueError):
    pass


def check_url(url: str) -> str:
    """`url` if Litestream can replicate to it; else ReplicaUrlError saying why."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ReplicaUrlError(
            f"replica URL {url!r}: the scheme must be one of {', '.join(sorted(SCHEMES))} "
            "(file:///backups, s3://bucket/prefix, sftp://user@host/path)"
        )
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise ReplicaUrlError(f"replica URL {url!r}: a file replica is file:///absolute/directory")
    elif not parts.netloc:
        raise ReplicaUrlError(f"replica URL {url!r}: name the bucket or host ({parts.scheme}://NAME/path)")
    return url


def database_url(base: str, name: str) -> str:
    """Where database `name` ("team/app.db") is replicated under the replica URL `base`."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + "/" + name.strip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


class ReplicaUrl(click.ParamType):  # type: ignore[type-arg]  # (older click: not generic)
    """A click type for --replica: empty (no backup) or a URL that `check_url` accepts."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not value:
            return ""
        try:
            return check_url(str(value))
        except ReplicaUrlError as exc:
            self.fail(str(exc), param, ctx)


def meta_path(state_dir: Path, name: str) -> Path:
    """Litestream's local state (its copy of recent transactions) for `name`, kept outside the
    served tree's databases: in the backing tree's state directory."""
    return state_dir / "litestream" / (name + META_SUFFIX)


def config_document(
    *, mountpoint: str, names: list[str], replica: str, state_dir: Path, socket: Path
) -> dict[str, Any]:
    """Litestream's configuration: each database by its path THROUGH the mount."""
    return {
        "socket": {"enabled": True, "path": str(socket), "permissions": 0o600},
        "dbs": [
            {
                "path": os.path.join(mountpoint, name),
                "meta-path": str(meta_path(state_dir, name)),
                "replica": {"url": database_url(replica, name)},
            }
            for name in names
        ],
    }


def write_config(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=2)
    os.replace(tmp, path)
