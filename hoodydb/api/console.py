"""The web console: static files from `hoodydb/console`, served at `/`.

The page is plain ES modules built on the JavaScript client (`console/hoodydb.js`, the same file
as `clients/js/src/hoodydb.js`); it holds no secret, the token is typed into it.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"


class ConsoleMount(Mount):
    """Claims the console's own files only: every other path keeps the router's 404 and 405
    (a catch-all mount at `/` would answer 404 for a wrong method on an API route)."""

    def __init__(self) -> None:
        # follow_symlink: in a source checkout the client file is a symlink into clients/js; an
        # installed package holds a copy.
        files = StaticFiles(directory=CONSOLE_DIR, html=True, follow_symlink=True)
        super().__init__("/", app=files, name="console")
        self.files = {"/"} | {f"/{path.name}" for path in CONSOLE_DIR.iterdir() if path.is_file()}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"] in self.files:
            return super().matches(scope)
        return Match.NONE, {}
