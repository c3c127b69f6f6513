"""`this_program()`: the command a running hoodydb restarts itself with, whatever way it was started."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRINT = "from hoodydb.fs.process import this_program; print(this_program())"


def _run(args: list[str], cwd: Path) -> list[str]:
    out = subprocess.run(
        args, cwd=cwd, check=True, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)}
    )
    return list(ast.literal_eval(out.stdout))


def test_a_script_is_rerun_by_its_absolute_path_with_the_same_interpreter_options(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PRINT)
    got = _run([sys.executable, "-X", "utf8", "prog.py", "mount", "a", "b"], tmp_path)
    assert got == [sys.executable, "-X", "utf8", str(tmp_path / "prog.py")]


def test_a_module_is_rerun_as_that_module(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PRINT)
    assert _run([sys.executable, "-m", "prog", "serve"], tmp_path) == [sys.executable, "-m", "prog"]
