"""Shared fixtures: real mounts in temporary directories, always unmounted.

Tests that need FUSE never skip: CI has /dev/fuse, so a missing one is a failure to report.
Each test is marked for its stage (unit, fuse, http) here, from what it uses: see tests/stages.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serve_process import ServeProcess

from hoodydb.fs.process import MountProcess, force_unmount
from tests.stages import RunTimeGuard, needed_markers

_guard = RunTimeGuard()
CLIENTS = Path(__file__).parent / "clients"  # stock SQLite clients in several languages


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in sorted(needed_markers(item)):
            item.add_marker(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    """The guard knows the running test from its first fixture's set-up to its last teardown."""
    _guard.item = item
    try:
        return (yield)
    finally:
        _guard.item = None


@pytest.fixture(autouse=True, scope="session")
def _runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Control sockets and logs of the test mounts go to a temporary directory, not /run."""
    previous = os.environ.get("HOODYDB_RUNTIME_DIR")
    os.environ["HOODYDB_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("runtime"))
    yield
    if previous is None:
        del os.environ["HOODYDB_RUNTIME_DIR"]
    else:
        os.environ["HOODYDB_RUNTIME_DIR"] = previous


@dataclass
class Mounted:
    backing: Path
    mnt: Path
    process: MountProcess
    log: Path

    def path(self, name: str) -> str:
        return str(self.mnt / name)


MountFactory = Callable[..., Mounted]


@pytest.fixture
def mount_factory(tmp_path: Path) -> Iterator[MountFactory]:
    """`mount_factory("--policy=off")` mounts a fresh backing dir; every mount is undone at teardown."""
    assert os.path.exists("/dev/fuse"), "/dev/fuse is required (CI has it)"
    assert shutil.which("fusermount3"), "fusermount3 is required: make test installs fuse3"
    started: list[Mounted] = []

    def factory(*extra_args: str, name: str = "") -> Mounted:
        suffix = name or str(len(started))
        backing, mnt = tmp_path / f"backing{suffix}", tmp_path / f"mnt{suffix}"
        backing.mkdir()
        log = tmp_path / f"mount{suffix}.log"
        process = MountProcess(backing, mnt, extra_args=extra_args, stderr_path=log).start()
        mounted = Mounted(backing, mnt, process, log)
        started.append(mounted)
        return mounted

    yield factory
    for mounted in reversed(started):
        mounted.process.stop()


@pytest.fixture
def mounted(mount_factory: MountFactory) -> Mounted:
    """A mount with the default policy (beside)."""
    return mount_factory()


@pytest.fixture
def serve_and_mount(tmp_path: Path) -> Iterator[tuple[ServeProcess, Path]]:
    """`hoodydb serve` with its mount, on defaults: the server and the mountpoint."""
    assert shutil.which("sqlite3"), "the sqlite3 CLI is required"
    data, mnt = tmp_path / "data", tmp_path / "mnt"
    server = ServeProcess(["--data", str(data), "--mount", str(mnt)], tmp_path)
    try:
        server.start()
        yield server, mnt
    finally:
        server.stop()
        force_unmount(mnt)  # only matters if serve itself died before it could unmount


@pytest.fixture(scope="session")
def go_writer(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/clients/writer.go built against Debian's mattn/go-sqlite3 (GOPATH mode)."""
    out = tmp_path_factory.mktemp("go")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": "/usr/share/gocode",
        "GOCACHE": str(out / "cache"),
    }
    binary = out / "writer"
    subprocess.run(
        ["go", "build", "-o", str(binary), str(Path(__file__).parent / "clients" / "writer.go")],
        env=env,
        check=True,
        timeout=600,
    )
    return str(binary)
