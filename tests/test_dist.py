"""The one-file artifacts of `make dist` run anywhere: copied into an empty directory, with an empty
environment and no checkout on any path, each serves, mounts, answers `locks`, does the README's
examples and stops cleanly. The PyInstaller binary does it with no Python on the machine at all."""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hoodydb.fs.process import force_unmount

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = Path(__file__).resolve().parent / "dist_scenario.sh"
MINIMAL_ENV = ["env", "-i", "PATH=/usr/bin:/bin"]

pytestmark = pytest.mark.fuse


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both artifacts, built once per session by the script `make dist` runs."""
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "HOODYDB_VENV_BIN": str(Path(sys.executable).parent)}
    subprocess.run(
        [str(ROOT / "packaging" / "build-dist.sh"), str(out)],
        check=True,
        capture_output=True,
        env=env,
        timeout=600,
    )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _copy_out(dist: Path, name: str, tmp_path: Path) -> Path:
    """An empty directory holding the artifact and the scenario, and nothing else."""
    where = tmp_path / "elsewhere"
    where.mkdir()
    shutil.copy2(dist / name, where / name)
    shutil.copy2(SCENARIO, where / SCENARIO.name)
    return where


def _run(command: list[str], where: Path) -> subprocess.CompletedProcess[str]:
    """Run the scenario in WHERE; even if it is killed at the timeout, nothing of it stays."""
    try:
        return subprocess.run(command, cwd=where, capture_output=True, text=True, timeout=240)
    finally:
        subprocess.run(["pkill", "-KILL", "-f", str(where)], check=False)
        for mountpoint in (where / "mnt", where / "db"):
            force_unmount(mountpoint)


def _check(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert "writer errors: 0" in lines and "rows: 40" in lines and "integrity: ok" in lines, result.stdout
    assert "mount writer errors: 0" in lines and "mount rows: 40" in lines, result.stdout
    assert "restored rows: 40" in lines, result.stdout  # the replica of the mount's --replica
    assert lines[-1] == "scenario ok"


def _scenario(name: str) -> list[str]:
    return [*MINIMAL_ENV, "bash", SCENARIO.name, f"./{name}", str(_free_port())]


def test_sums_match(dist: Path) -> None:
    sums = subprocess.run(["sha256sum", "--check", "SHA256SUMS"], cwd=dist, capture_output=True, text=True)
    assert sums.returncode == 0 and sums.stdout.split() == ["hoodydb.pyz:", "OK", "hoodydb:", "OK"], sums


def test_zipapp_runs_anywhere(dist: Path, tmp_path: Path) -> None:
    where = _copy_out(dist, "hoodydb.pyz", tmp_path)
    _check(_run(_scenario("hoodydb.pyz"), where))


def _python_hidden() -> list[str]:
    """Shell commands that hide every Python of this machine, the checkout and its venv, inside
    a private mount namespace: directories under a tmpfs, files under /dev/null."""
    dirs = {"/root/.pyenv", sys.prefix, str(ROOT)}
    if os.path.realpath(sys.base_prefix) not in ("/", "/usr", "/usr/local"):
        dirs.add(sys.base_prefix)  # its own tree (pyenv, a venv's base); a system Python's is /usr
    dirs |= {*glob.glob("/usr/lib/python3*"), *glob.glob("/usr/local/lib/python3*")}
    files = {*glob.glob("/usr/bin/python*"), *glob.glob("/usr/local/bin/python*")}
    files |= {*glob.glob("/usr/lib/*/libpython*"), *glob.glob("/usr/local/lib/libpython*")}
    files = {os.path.realpath(f) for f in files}
    dirs = {d for d in dirs if os.path.isdir(d)}
    dirs = {d for d in dirs if not any(d.startswith(other + "/") for other in dirs)}  # hidden already
    files = {f for f in files if os.path.isfile(f) and not any(f.startswith(d + "/") for d in dirs)}
    return [f"mount -t tmpfs tmpfs {shlex.quote(d)}" for d in sorted(dirs)] + [
        f"mount --bind /dev/null {shlex.quote(f)}" for f in sorted(files)
    ]


def test_binary_runs_anywhere_without_python(dist: Path, tmp_path: Path) -> None:
    where = _copy_out(dist, "hoodydb", tmp_path)
    candidates = {sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3", "python3", "python"}
    no_python = " && ".join(
        f"! {shlex.join([*MINIMAL_ENV, exe, '-c', 'pass'])} 2>/dev/null" for exe in sorted(candidates)
    )
    script = "\n".join(
        [
            "set -e",
            *_python_hidden(),
            f"{no_python} || {{ echo 'a Python is still reachable' >&2; exit 97; }}",
            f"test ! -e {shlex.quote(os.path.join(sys.base_prefix, 'lib'))}/python3.11/os.py",
            "test ! -e /usr/lib/python3.11/os.py",
            f"exec {shlex.join(_scenario('hoodydb'))}",
        ]
    )
    _check(_run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script], where))
