"""The appliance's pieces hold together: the one-file build runs, the systemd unit verifies."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_zipapp_builds_and_runs(tmp_path: Path) -> None:
    """What `make dist` builds: one file holding hoodydb and every Python dependency."""
    shiv = Path(sys.executable).parent / "shiv"
    target = tmp_path / "hoodydb.pyz"
    subprocess.run(
        [str(shiv), "-q", "-c", "hoodydb", "-o", str(target), "-p", sys.executable, str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {"SHIV_ROOT": str(tmp_path / "shiv-root"), "PATH": "/usr/bin:/bin"}
    version = subprocess.run([str(target), "--version"], check=True, capture_output=True, text=True, env=env)
    assert version.stdout.startswith("hoodydb, version")
    # The mount's dependencies (mfusepy, libfuse through ctypes) load from inside the zipapp.
    missing = subprocess.run(
        [str(target), "mount", str(tmp_path / "nope"), str(tmp_path / "m"), "--foreground"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    # The web console ships inside, its client a real file (a symlink into clients/js in the source).
    with zipfile.ZipFile(target) as pyz:
        names = {name.split("site-packages/", 1)[-1] for name in pyz.namelist()}
        client = next(n for n in pyz.namelist() if n.endswith("hoodydb/console/hoodydb.js"))
        assert b"export function createClient" in pyz.read(client)
    assert {f"hoodydb/console/{name}" for name in ["index.html", "console.js", "console.css"]} <= names


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze, "systemd-analyze is required: make test installs systemd"
    unit = (ROOT / "packaging" / "hoodydb.service").read_text()
    hoodydb = Path(sys.executable).parent / "hoodydb"
    (tmp_path / "hoodydb.service").write_text(unit.replace("/usr/local/bin/hoodydb", str(hoodydb)))
    result = subprocess.run(
        [systemd_analyze, "verify", str(tmp_path / "hoodydb.service")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "hoodydb.service" not in result.stderr, result.stderr
