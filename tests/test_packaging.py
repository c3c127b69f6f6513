"""The systemd unit verifies (the one-file builds: tests/test_dist.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
