"""Files unlinked (or replaced) while open, on a real mount: they keep working like on any disk.

fstat() of such a file reaches the daemon with no file handle; libfuse keeps a hidden name for
it, which the daemon answers from a descriptor it keeps, and which is never seen in a listing or
in the backing directory. Python's tempfile.TemporaryFile, pytest's output capture and
python-diskcache's own test suite are the users checked here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import diskcache
import pytest

from tests.conftest import Mounted

pytestmark = pytest.mark.fuse

# make test unpacks the sdist of the installed diskcache here (its wheel has no tests).
DISKCACHE_SOURCE = Path(sys.prefix) / "diskcache-tests" / f"diskcache-{diskcache.__version__}"


def settled_listing(path: Path) -> list[str]:
    """The directory's names once the kernel's asynchronous RELEASE of closed files is done."""
    deadline = time.monotonic() + 5
    while any(name.startswith(".fuse_hidden") for name in os.listdir(path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(os.listdir(path))


def test_temporary_file_fstat_read_and_write(mounted: Mounted) -> None:
    with tempfile.TemporaryFile(dir=mounted.mnt) as f:
        f.write(b"x" * 10_000)
        f.flush()
        st = os.fstat(f.fileno())
        assert (st.st_size, st.st_nlink) == (10_000, 0)
        f.seek(0)
        assert f.read() == b"x" * 10_000
        f.truncate(10)
        assert os.fstat(f.fileno()).st_size == 10
        assert os.listdir(mounted.mnt) == [] and os.listdir(mounted.backing) == []
    assert settled_listing(mounted.backing) == [] and os.listdir(mounted.mnt) == []


def test_unlinked_file_through_proc_fd(mounted: Mounted) -> None:
    """A path with no file handle behind it (chmod, truncate, open of /proc/self/fd/N) finds
    the unlinked file too."""
    path = mounted.path("gone")
    with open(path, "w+b") as f:
        f.write(b"hello world")
        f.flush()
        os.unlink(path)
        by_fd = f"/proc/self/fd/{f.fileno()}"
        os.chmod(by_fd, 0o600)
        os.truncate(by_fd, 5)
        with open(by_fd, "rb") as again:
            assert again.read() == b"hello"
        st = os.fstat(f.fileno())
        assert (st.st_mode & 0o777, st.st_size, st.st_nlink) == (0o600, 5, 0)
    assert settled_listing(mounted.backing) == []


def test_rename_over_an_open_file(mounted: Mounted) -> None:
    new, old = Path(mounted.path("new")), Path(mounted.path("config"))
    new.write_text("new")
    old.write_text("old!")
    with open(old) as reader:
        os.rename(new, old)
        assert reader.read() == "old!"  # the replaced file, through its descriptor
        assert os.fstat(reader.fileno()).st_size == 4
        assert old.read_text() == "new"
    assert settled_listing(mounted.backing) == ["config"]
    assert os.listdir(mounted.mnt) == ["config"]


def daemon_files(m: Mounted) -> list[str]:
    """What the daemon has open, but for /dev/fuse (a channel per worker, started on demand)."""
    names = []
    for fd in Path(f"/proc/{m.process.pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, closed
            names.append(os.readlink(fd))
    return sorted(name for name in names if name != "/dev/fuse")


@pytest.mark.parametrize("then", ["rename", "rmdir"])
def test_an_unlinked_file_is_let_go_after_its_directory_goes(mounted: Mounted, then: str) -> None:
    """The descriptor kept for a file unlinked while open is closed at its last close, even once
    libfuse can no longer name it there (its directory renamed or removed)."""
    before = daemon_files(mounted)
    directory = mounted.mnt / "dir"
    directory.mkdir()
    with open(directory / "scratch", "w+b") as f:
        f.write(b"data")
        f.flush()
        os.unlink(directory / "scratch")
        if then == "rename":
            directory.rename(mounted.mnt / "moved")
        else:
            directory.rmdir()
        f.seek(0)
        assert f.read() == b"data"
    deadline = time.monotonic() + 5  # RELEASE comes after close() has returned
    while daemon_files(mounted) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon_files(mounted) == before


def test_an_unlinked_file_is_found_after_its_directory_is_renamed(mounted: Mounted) -> None:
    """libfuse names the hidden file by its directory's path, which a rename changes: calls that
    come with that path and no file handle (fchmod, fstat) must still reach the file."""
    directory = mounted.mnt / "dir"
    directory.mkdir()
    with open(directory / "scratch", "w+b") as f:
        f.write(b"data")
        f.flush()
        os.unlink(directory / "scratch")
        directory.rename(mounted.mnt / "moved")
        os.fchmod(f.fileno(), 0o600)
        st = os.fstat(f.fileno())
        assert (st.st_mode & 0o777, st.st_size) == (0o600, 4)


@pytest.fixture
def other_file_system(mounted: Mounted) -> Iterator[Path]:
    """A directory of the backing tree on a file system of its own: a rename out of it is EXDEV."""
    here = mounted.backing / "elsewhere"
    here.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "hoodydb-test", str(here)], check=True)
    try:
        yield here
    finally:
        subprocess.run(["umount", str(here)], check=True)


def test_a_failed_rename_over_an_open_file_leaves_it(mounted: Mounted, other_file_system: Path) -> None:
    """libfuse moves an open target out of the way (to its hidden name) before the rename; when
    the rename itself then fails, the target must still be there under its own name."""
    (other_file_system / "new").write_text("from another file system")
    target = Path(mounted.path("config"))
    target.write_text("mine")
    with open(target) as reader:
        with pytest.raises(OSError) as failed:
            os.rename(mounted.path("elsewhere/new"), target)
        assert failed.value.errno == errno.EXDEV
        assert (mounted.backing / "config").read_text() == "mine"
        assert target.read_text() == "mine"
        assert reader.read() == "mine"
    assert target.read_text() == "mine"
    assert settled_listing(mounted.backing) == ["config", "elsewhere"]
    assert sorted(os.listdir(mounted.mnt)) == ["config", "elsewhere"]
    assert (other_file_system / "new").read_text() == "from another file system"


def test_a_clients_own_hidden_looking_name_is_a_plain_rename(mounted: Mounted) -> None:
    source = Path(mounted.path("data"))
    source.write_text("kept")
    time.sleep(1.5)  # well after its last close: not libfuse hiding a file being released
    target = mounted.mnt / ".fuse_hidden0000000100000001"
    os.rename(source, target)
    assert target.read_text() == "kept"
    assert os.listdir(mounted.backing) == [target.name]


def test_an_open_file_renamed_to_a_hidden_looking_name_is_renamed(mounted: Mounted) -> None:
    """Only libfuse's own hiding of a file unlinks it: an open file renamed by a client to a
    name of that form keeps its data under that name."""
    source = Path(mounted.path("data"))
    source.write_text("kept")
    target = mounted.mnt / ".fuse_hidden0000000100000001"
    with open(source) as reader:
        os.rename(source, target)
        assert reader.read() == "kept"
    assert target.read_text() == "kept"
    assert os.listdir(mounted.backing) == [target.name]


def test_pytest_capture_with_its_temporary_files_on_the_mount(mounted: Mounted, tmp_path: Path) -> None:
    """pytest's default capture writes to unlinked temporary files and fstat()s them."""
    tmp = mounted.mnt / "tmp"
    tmp.mkdir()
    (tmp_path / "test_inner.py").write_text("def test_prints():\n    print('captured')\n    assert True\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path / "test_inner.py")],
        env={**os.environ, "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout


def test_diskcaches_own_test_suite_with_its_temporary_directory_on_the_mount(mounted: Mounted) -> None:
    """python-diskcache's tests, default pytest options, TMPDIR on the mount (its caches and
    pytest's capture files). test_djangocache and test_doctest need Django, so they are left
    out; the rest is the whole suite (179 tests)."""
    assert (DISKCACHE_SOURCE / "tests").is_dir(), "run `make test`: it unpacks diskcache's sdist"
    tmp = mounted.mnt / "tmp"
    tmp.mkdir()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            # Its own (empty) configuration, not this repository's, which encloses the venv.
            "-c",
            "setup.cfg",
            "--rootdir=.",
            "--ignore=tests/test_djangocache.py",
            "--ignore=tests/test_doctest.py",
            "tests",
        ],
        cwd=DISKCACHE_SOURCE,
        env={**os.environ, "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "179 passed" in summary and "failed" not in summary and "error" not in summary, summary
