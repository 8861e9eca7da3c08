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


@pytest.fixture
def make_submission(tmp_path):
    """Copies ``reference/`` into a temporary submission and applies edits to it.

    ``make_submission({"attention/attention.py": (old, new)})`` replaces the text
    ``old`` by ``new`` in that file (failing if ``old`` is absent), or writes the
    file when given a plain string.
    """
    import shutil

    def make(edits: dict[str, tuple[str, str] | str] | None = None) -> Path:
        target = tmp_path / "submission"
        shutil.copytree(ROOT / "reference", target)
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

    return make
