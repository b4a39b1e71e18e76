"""The import direction between genrl's layers, checked by import-linter (contracts in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
UPWARD_IMPORT = "import genrl.training.loop  # noqa"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the genrl package under root, with root first on the import path.

    --no-cache: no .import_linter_cache folder is left in the work tree.
    """
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_import_contracts():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout, result.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    shutil.copytree(ROOT / "genrl", tmp_path / "genrl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")

    # The unmodified copy passes, so the failure below comes from the upward import alone.
    pristine = _lint_imports(tmp_path)
    assert pristine.returncode == 0, pristine.stdout
    assert "0 broken" in pristine.stdout, pristine.stdout

    files = tmp_path / "genrl" / "util" / "files.py"
    text = files.read_text()
    if not text.endswith("\n"):
        text += "\n"
    files.write_text(text + UPWARD_IMPORT + "\n")
    line = len(files.read_text().splitlines())

    broken = _lint_imports(tmp_path)
    out = broken.stdout
    assert broken.returncode != 0, out
    assert "1 broken" in out, out
    assert "genrl's layers import only from the layers below them BROKEN" in out, out
    assert "genrl.util is not allowed to import genrl.training" in out, out
    # The offending import at the line it was added on: proof that the copy, not the installed
    # (editable) genrl, was analysed, since the real tree has no such import.
    assert f"genrl.util.files -> genrl.training.loop (l.{line})" in out, out


# Declarative tables may be longer: the argument parser lists every command and option.
LONG_ALLOWED = {("genrl/cli.py", "build_parser")}
MAX_FUNCTION_LINES = 60


def test_functions_read_in_one_screen():
    """No function in genrl/ is longer than about 60 lines (its docstring and comments included)."""
    import ast

    long = []
    for path in sorted((ROOT / "genrl").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and (name, node.name) not in LONG_ALLOWED
            ):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_every_subpackage_is_a_layer():
    """A new folder under genrl/ must be placed in the import layers (lint-imports is exhaustive)."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")
    named = {part.strip() for layer in layers["layers"] for part in layer.split("|")}
    folders = {p.parent.name for p in (ROOT / "genrl").glob("*/__init__.py")}
    assert folders | {"cli"} == named
