"""Shared fixtures of the project's own tests."""

import importlib
from pathlib import Path

import pytest

from course import submission

ROOT = submission.repo_root()


@pytest.fixture
def reference_module():
    """Imports an exercise module of ``reference/``: ``reference_module("attention")``."""
    with submission.active(ROOT / "reference"):
        yield lambda name: importlib.import_module(f"exercises.{name}.{name}")


def copy_with_edits(target: Path, edits: dict[str, tuple[str, str] | str] | None = None, *, source: Path = ROOT / "reference") -> Path:
    """Copies ``source`` (default ``reference/``) to ``target`` and applies ``edits``.

    ``{"attention/attention.py": (old, new)}`` replaces the text ``old`` by
    ``new`` in that file (failing if ``old`` is absent); a plain string writes
    the file.
    """
    import shutil

    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    for relpath, edit in (edits or {}).items():
        path = target / relpath
        if isinstance(edit, str):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(edit)
            continue
        old, new = edit
        text = path.read_text()
        assert old in text, f"{relpath} has no {old!r} to replace"
        path.write_text(text.replace(old, new))
    return target


@pytest.fixture
def make_submission(tmp_path):
    """Copies ``reference/`` into a temporary submission and applies edits to it (see :func:`copy_with_edits`)."""
    return lambda edits=None: copy_with_edits(tmp_path / "submission", edits)


def assert_valid_score_files(out: Path, *, seed: int | None = None):
    """The three files of ``course grade`` exist and are well formed; returns the loaded score file."""
    import json

    import graders

    results = json.loads((out / "results.json").read_text())
    assert isinstance(results["score"], int | float) and isinstance(results["execution_time"], int | float)
    for test in results["tests"]:
        assert set(test) >= {"name", "score", "max_score", "status", "output", "visibility"}, test
        assert test["status"] in ("passed", "failed") and 0 <= test["score"] <= test["max_score"]
    assert isinstance(json.loads((out / "report.json").read_text())["tests"], list)
    result = graders.load(out / "score.json")
    assert results["score"] == result.score
    if seed is not None:
        assert result.seed == seed
    return result
