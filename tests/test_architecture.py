"""The layers of docs/ARCHITECTURE.md hold (import-linter's contracts in pyproject.toml), and one upward import
breaks them: the check is not one that cannot fail."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "lablens"


def _lint(pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    lint = shutil.which("lint-imports") or pytest.fail("lint-imports is missing: pip install -e '.[test]'")
    return subprocess.run(
        [lint, "--no-cache", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_the_layers_hold() -> None:
    done = _lint()
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def test_one_upward_import_breaks_them(tmp_path: Path) -> None:
    shutil.copytree(SRC, tmp_path / "lablens", ignore=shutil.ignore_patterns("__pycache__"))
    io = tmp_path / "lablens" / "data" / "io.py"
    io.write_text(
        io.read_text() + "\n\ndef _upward() -> None:\n    import lablens.workflows.train  # noqa: F401\n"
    )
    done = _lint(tmp_path)
    assert done.returncode != 0, done.stdout[-3000:]
    assert "BROKEN" in done.stdout and "lablens.data.io -> lablens.workflows.train" in done.stdout


def test_no_module_reaches_into_another_modules_private_names() -> None:
    """``from lablens.x import _name`` across modules is an upward or sideways dependency in disguise."""
    found = []
    for f in SRC.rglob("*.py"):
        here = ".".join(f.relative_to(SRC.parent).with_suffix("").parts)
        package = here.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lablens"):
                private = [
                    a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")
                ]
                if private and node.module.rsplit(".", 1)[0] != package:  # a sibling module may share them
                    found.append(f"{here}: from {node.module} import {', '.join(private)}")
    assert found == [], "\n".join(found)


def test_lablens_imports_without_its_optional_stacks() -> None:
    """Training and prediction run where only torch is installed (../shared/docs/GPU.md): importing the CLI and
    the workflows loads neither the service stack nor Ray."""
    code = (
        "import sys, lablens.cli, lablens.workflows.train, lablens.workflows.predict\n"
        "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'ray') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _functions(path: Path, commands: bool = False) -> list[tuple[str, int, int]]:
    """Every function in ``path`` (only Typer commands with ``commands``): its name, its length (``def`` line to
    last line) and its body's length (after the docstring)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if commands and not any("command" in ast.unparse(d) for d in node.decorator_list):
                continue
            body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
            out.append((node.name, node.end_lineno - node.lineno + 1, node.end_lineno - body[0].lineno + 1))
    return out


def test_no_function_is_longer_than_80_lines() -> None:
    long = [
        f"{f.relative_to(SRC)}:{name} {n} lines"
        for f in sorted(SRC.rglob("*.py"))
        for name, n, _ in _functions(f)
        if n > 80
    ]
    assert long == [], "\n".join(long)


def test_cli_commands_only_build_a_config_and_print() -> None:
    """A command body (after its options and docstring) stays under 25 lines: the logic lives in the workflows."""
    long = [
        f"{name}: {body} lines" for name, _, body in _functions(SRC / "cli.py", commands=True) if body > 25
    ]
    assert long == [], "\n".join(long)
