"""Which stage a test belongs to, decided from what it starts, and checked while it runs.

Three stages run one after the other (`make test-unit`, `make test-fuse`, `make test-http`):
    unit  `-m "not fuse and not http"`  no /dev/fuse, no server
    fuse  `-m "fuse and not http"`      real mounts
    http  `-m "http"`                   a real `hoodydb serve` (with or without its mount)
Every test is in exactly one of them.

At collection a test gets `fuse` when it uses a mount fixture, and `fuse` or `http` when its code,
its fixtures or the module functions they call name MountProcess or ServeProcess. While it runs,
an audit hook looks at every program it starts: `hoodydb mount`, `fusermount3` or `hoodydb serve`
from a test without the marker fails the test at once, so `-m "not fuse"` can never run a mount.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

# Fixtures (and whatever fixture uses them) that give the test a real mount.
FUSE_FIXTURES = frozenset({"mount_factory", "mounted"})
# Classes that start a real process of that kind, by name: tests import serve_process as a
# top-level module, so the class object differs from tests.serve_process.ServeProcess.
STARTERS = {"MountProcess": "fuse", "ServeProcess": "http"}


def needed_markers(item: pytest.Item) -> set[str]:
    """The stage markers a test needs, from its fixtures and the names its code uses."""
    needed = {"fuse"} if FUSE_FIXTURES & set(getattr(item, "fixturenames", ())) else set()
    functions: list[Callable[..., Any]] = []
    if isinstance(item, pytest.Function):
        functions.append(item.function)
        for defs in item._fixtureinfo.name2fixturedefs.values():
            functions.extend(d.func for d in defs)
    seen: set[int] = set()
    for function in functions:
        needed |= _markers_named_by(function, seen)
    return needed


def _markers_named_by(function: Callable[..., Any], seen: set[int]) -> set[str]:
    """Follow the global names a function's code uses, through the functions of tests/ it calls."""
    code = getattr(function, "__code__", None)
    if code is None or id(code) in seen:
        return set()
    seen.add(id(code))
    found: set[str] = set()
    namespace = getattr(function, "__globals__", {})
    for name in _names(code):
        target = namespace.get(name)
        if isinstance(target, type) and target.__name__ in STARTERS:
            found.add(STARTERS[target.__name__])
        elif isinstance(target, types.FunctionType) and _is_test_code(target):
            found |= _markers_named_by(target, seen)
    return found


def _names(code: types.CodeType) -> Iterable[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _is_test_code(function: types.FunctionType) -> bool:
    return os.sep + "tests" + os.sep in function.__code__.co_filename


def markers_for_command(argv: Sequence[str]) -> set[str]:
    """The markers a test needs to run this program: a mount needs `fuse`, `serve` needs `http`
    (and `fuse` too unless it is told --no-mount)."""
    words = [os.fsdecode(a) for a in argv]
    if words and os.path.basename(words[0]) == "fusermount3":
        return {"fuse"}
    for i, word in enumerate(words):
        if os.path.basename(word) in ("hoodydb", "hoodydb.pyz") and (
            i == 0 or words[i - 1] == "-m" or word.endswith(".pyz")
        ):
            command = next((w for w in words[i + 1 :] if not w.startswith("-")), None)
            if command == "mount":
                return {"fuse"}
            if command == "serve":
                return {"http"} if "--no-mount" in words else {"http", "fuse"}
            return set()
    return set()


class RunTimeGuard:
    """Fails a test that starts a mount or a server without the marker that puts it in its stage."""

    def __init__(self) -> None:
        self.item: pytest.Item | None = None
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self.item is None:
            return
        if event == "subprocess.Popen" or event in ("os.posix_spawn", "os.exec"):
            argv = args[1]
        else:
            return
        if isinstance(argv, (str, bytes)):
            argv = [argv]
        missing = markers_for_command(list(argv)) - {m.name for m in self.item.iter_markers()}
        if missing:
            raise RuntimeError(
                f"{self.item.nodeid} starts {' '.join(map(os.fsdecode, argv))!r} but is not marked "
                f"{' and '.join(sorted(missing))}: add @pytest.mark.{sorted(missing)[0]} (or use the "
                "conftest fixtures / MountProcess / ServeProcess, which mark it) so that its stage runs it"
            )
