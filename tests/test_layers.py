"""Who may import whom: the import-linter contracts of pyproject.toml hold, and they catch a broken arrow."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

from course import catalog
from course.submission import PACKAGE, repo_root

ROOT = repo_root()
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract for contract in CONFIG["contracts"]}
PACKAGES = sorted({root.split(".")[0] for root in CONFIG["root_packages"]})


def lint_imports(cwd: Path) -> tuple[int, str]:
    """Runs ``lint-imports`` in ``cwd`` (whose packages it checks); its exit status and its report on one line per contract."""
    command = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
               "--no-cache"]
    # A wide console keeps each contract's name and verdict on one line.
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "500"})
    return done.returncode, done.stdout + done.stderr


def test_the_contracts_hold():
    status, report = lint_imports(ROOT)
    assert status == 0, report
    for contract in CONTRACTS.values():
        assert f"{contract['name']} KEPT" in report, report


def test_the_linter_sees_every_python_file():
    # A folder without an __init__.py is invisible to grimp unless pyproject names it as a root package.
    graph = grimp.build_graph(*CONFIG["root_packages"], cache_dir=None)
    files = {p.relative_to(ROOT).with_suffix("") for top in PACKAGES for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts}
    modules = {".".join(f.parts[:-1] if f.name == "__init__" else f.parts) for f in files}
    assert modules - graph.modules == set(), "add their folders to [tool.importlinter] root_packages"


def test_every_exercise_module_is_held_to_standing_alone():
    expected = {f"{PACKAGE}.{e.name}.{e.name}" for e in catalog.EXERCISES}
    assert set(CONTRACTS["exercise-modules-stand-alone"]["source_modules"]) == expected


@pytest.mark.parametrize("module, line, broken", [
    ("course/check.py", "import graders", "layers"),
    ("authoring/stubs.py", "import graders.batch", "layers"),
    ("exercises/attention/test_attention.py", "from reference.attention.attention import causal_mask", "exercises-see-nothing-hidden"),
    ("exercises/loss/test_loss.py", "from course import cli", "exercises-use-little-of-course"),
    ("exercises/loss/loss.py", "from course import seeds", "exercise-modules-stand-alone"),
    ("graders/runtime/wire.py", "import graders", "runtime-stands-alone"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, broken):
    def not_python(folder, names):
        return [n for n in names if n == "__pycache__" or not (n.endswith(".py") or Path(folder, n).is_dir())]

    for top in PACKAGES:
        shutil.copytree(ROOT / top, tmp_path / top, ignore=not_python)
    shutil.copyfile(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    edited = tmp_path / module
    edited.write_text(edited.read_text() + f"\n{line}\n")
    status, report = lint_imports(tmp_path)
    assert status != 0 and f"{CONTRACTS[broken]['name']} BROKEN" in report, report
