"""The web console: static files from `hoodydb/console`, served at `/` after every API route.

The page is plain ES modules built on the JavaScript client (`console/hoodydb.js`, the same file
as `clients/js/src/hoodydb.js`); it holds no secret, the token is typed into it.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"


def console_mount() -> Mount:
    # follow_symlink: in a source checkout the client file is a symlink into clients/js; an
    # installed package holds a copy. `..` is still refused either way.
    return Mount("/", app=StaticFiles(directory=CONSOLE_DIR, html=True, follow_symlink=True), name="console")
