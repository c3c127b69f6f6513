"""Configuration: every mount option reaches the daemon, from `hoodydb mount` (detached) and from
`hoodydb serve`, as a flag or as its HOODYDB_ environment variable; a flag beats the environment.

The daemon reports the settings it runs with on its control socket, so each check reads what the
running daemon parsed, not what a command meant to send."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_process import ServeProcess

from hoodydb import control_client
from hoodydb.backup.binary import locate
from hoodydb.fs.process import force_unmount, is_mounted
from hoodydb.fs.settings import MountSettings, daemon_args, env_var, flag, no_flag

# A value other than the default for every mount option. A new option fails
# test_every_option_has_a_value_here until it is added, and then is checked by every test below.
NON_DEFAULT: dict[str, Any] = {
    "policy": "off",
    "lock_timeout": 7.5,
    "speculative_reads": True,
    "max_threads": 96,
    "kernel_cache": False,
    "pin_under_contention": False,
    "commit_feed": False,
    "pending_byte": 0x40000000 + 4096,
    "replica": "file:///tmp/hoodydb-config-test-replica",  # no WAL database here: nothing is written
    "replica_stale_after": 30.0,
    "litestream": str(locate()),
    "log_level": "info",
    "debug": True,
}


def as_flags(values: dict[str, Any]) -> list[str]:
    """Written by hand, not by daemon_args: these tests check that function too."""
    out = []
    for name, value in values.items():
        if isinstance(value, bool):
            out.append(flag(name) if value else no_flag(name))
        else:
            out.append(f"{flag(name)}={value}")
    return out


def as_env(values: dict[str, Any]) -> dict[str, str]:
    return {env_var(name): str(int(v) if isinstance(v, bool) else v) for name, v in values.items()}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any HOODYDB_ setting but the runtime directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOODYDB_") or k == "HOODYDB_RUNTIME_DIR"}
    return {**env, **extra}


def daemon_settings(mountpoint: Path) -> dict[str, Any]:
    report = control_client.query(control_client.socket_path(mountpoint))
    return report["settings"]  # type: ignore[no-any-return]


def test_every_option_has_a_value_here() -> None:
    defaults = MountSettings().report()
    assert set(NON_DEFAULT) == set(defaults)
    assert all(NON_DEFAULT[name] != defaults[name] for name in defaults)


def test_daemon_args_name_every_option_explicitly() -> None:
    # Explicit even at the default: the daemon inherits the environment, which must not override.
    args = daemon_args(MountSettings())
    for f in dataclasses.fields(MountSettings):
        assert any(
            a == flag(f.name) or a == no_flag(f.name) or a.startswith(flag(f.name) + "=") for a in args
        )


# --- the detached mount ----------------------------------------------------------------------


@pytest.fixture
def detached(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Backing and mountpoint for `hoodydb mount` (detached); its daemon is stopped afterwards."""
    backing, mnt = tmp_path / "backing", tmp_path / "mnt"
    backing.mkdir()
    yield backing, mnt
    if is_mounted(mnt):
        pid = control_client.query(control_client.socket_path(mnt))["pid"]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while is_mounted(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
    force_unmount(mnt)


def mount_detached(backing: Path, mnt: Path, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "hoodydb", "mount", str(backing), str(mnt), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return daemon_settings(mnt)


@pytest.mark.fuse
def test_the_detached_mount_passes_every_flag_to_its_daemon(detached: tuple[Path, Path]) -> None:
    assert mount_detached(*detached, as_flags(NON_DEFAULT), clean_env()) == NON_DEFAULT


@pytest.mark.fuse
def test_the_detached_mount_reads_every_option_from_the_environment(detached: tuple[Path, Path]) -> None:
    assert mount_detached(*detached, [], clean_env(**as_env(NON_DEFAULT))) == NON_DEFAULT


@pytest.mark.fuse
def test_flags_beat_the_environment(detached: tuple[Path, Path]) -> None:
    defaults = MountSettings().report()
    got = mount_detached(*detached, as_flags(defaults), clean_env(**as_env(NON_DEFAULT)))
    assert got == defaults


@pytest.mark.fuse
def test_the_log_level_reaches_the_daemons_log(detached: tuple[Path, Path]) -> None:
    backing, mnt = detached
    mount_detached(backing, mnt, [], clean_env(HOODYDB_LOG_LEVEL="INFO"))
    log = control_client.socket_path(mnt).with_suffix(".log").read_text()
    assert "hoodydb.mount INFO mounting" in log


# --- serve and its mount -----------------------------------------------------------------------


def serve_settings(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The settings serve's mount runs with, and serve's stderr; serve is stopped again."""
    mnt = tmp_path / "mnt"
    serve_args = ["--data", str(tmp_path / "data"), "--mount", str(mnt), *args]
    server = ServeProcess(serve_args, tmp_path, env=env)
    server.env = env  # exactly this environment, not this process's with it on top
    try:
        with server:
            settings = daemon_settings(mnt)
        assert server.proc is not None and server.proc.returncode == 0, server.stderr()
        return settings, server.stderr()
    finally:
        force_unmount(mnt)


@pytest.mark.fuse
@pytest.mark.http
def test_serve_passes_every_mount_flag_to_its_mount(tmp_path: Path) -> None:
    settings, stderr = serve_settings(tmp_path, as_flags(NON_DEFAULT), clean_env())
    assert settings == NON_DEFAULT
    assert "hoodydb.api INFO Running on" in stderr  # the level applies to serve itself too


@pytest.mark.fuse
@pytest.mark.http
def test_serve_reads_every_mount_option_from_the_environment(tmp_path: Path) -> None:
    settings, stderr = serve_settings(tmp_path, [], clean_env(**as_env(NON_DEFAULT)))
    assert settings == NON_DEFAULT
    assert "hoodydb.api INFO Running on" in stderr


@pytest.mark.fuse
@pytest.mark.http
def test_serve_logs_nothing_below_warning_by_default(tmp_path: Path) -> None:
    settings, stderr = serve_settings(tmp_path, [], clean_env())
    assert settings == MountSettings().report()
    assert "INFO" not in stderr


@pytest.mark.fuse
@pytest.mark.http
def test_a_lock_timeout_from_the_environment_bounds_the_statement_timeout(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "hoodydb",
        "serve",
        "--data",
        str(tmp_path / "d"),
        "--mount",
        str(tmp_path / "m"),
    ]
    done = subprocess.run(
        [*cmd, "--statement-timeout", "5"],
        env=clean_env(HOODYDB_LOCK_TIMEOUT="3"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "--statement-timeout must be below --lock-timeout" in done.stderr
    assert not is_mounted(tmp_path / "m")


# --- serve's own options -----------------------------------------------------------------------


# --no-mount comes from the environment, which the stage guard does not read: marked as mounting.
@pytest.mark.fuse
@pytest.mark.http
def test_serve_options_from_the_environment_and_flags_beating_them(tmp_path: Path) -> None:
    roots = [tmp_path / "one", tmp_path / "two"]
    env = clean_env(
        HOODYDB_NO_MOUNT="1",
        HOODYDB_ROOTS=f" {roots[0]}, {roots[1]},",
        HOODYDB_MAX_BODY_BYTES="200",
        HOODYDB_TOKENS="env-token",
        HOODYDB_CORS_ORIGINS="http://env.example",
    )
    args = ["--cors-origin", "http://flag.example"]
    with ServeProcess(args, tmp_path, token="flag-token", env=env) as api:
        assert f"serving {roots[0]}, {roots[1]}" in api.stdout()
        # --token given: HOODYDB_TOKENS is not used at all.
        assert api.client.get("/api/v1/sqlite/databases").status_code == 200
        other = api.client.get("/api/v1/sqlite/databases", headers=api.auth_headers("env-token"))
        assert other.status_code == 401
        big = api.client.post("/api/v1/sqlite/databases", json={"path": "x" * 300})
        assert big.status_code == 413, big.text
        for origin, allowed in [("http://flag.example", True), ("http://env.example", False)]:
            answer = httpx.get(f"{api.url}/healthz", headers={"Origin": origin})
            assert ("access-control-allow-origin" in answer.headers) == allowed


# --no-mount comes from the environment, which the stage guard does not read: marked as mounting.
@pytest.mark.fuse
@pytest.mark.http
def test_mount_flags_without_a_mount_are_refused_but_the_environment_is_not(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "hoodydb", "serve", "--no-mount", "--root", str(tmp_path / "r")]
    done = subprocess.run([*cmd, "--policy", "off"], env=clean_env(), capture_output=True, text=True)
    assert done.returncode == 2 and "--policy: for the mount" in done.stderr
    # A shared environment holds mount options too: serve --no-mount starts anyway.
    env = {**as_env(NON_DEFAULT), "HOODYDB_NO_MOUNT": "1", "HOODYDB_ROOTS": str(tmp_path / "r")}
    with ServeProcess([], tmp_path, env=clean_env(**env)) as api:
        assert api.client.get("/api/v1/sqlite/databases").status_code == 200
