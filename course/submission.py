"""The active submission: which directory the package ``exercises`` resolves to.

A *submission* is any directory shaped like ``exercises/``: one folder per
exercise, each holding the module named after it (``attention/attention.py``).
Course code, notebooks and visible tests always import exercise code by its
absolute name (``from exercises.attention.attention import causal_mask``); this
module decides which file that name loads.

There is one mechanism, and no silent fallback: the environment variable
``COURSE_SUBMISSION`` (or :func:`activate`, which sets it) names the submission
directory. Unset, the repository's own ``exercises/`` is used, so students see
their own code at work. A module the active submission lacks is an import error,
never the stub or the reference in its place.

Only exercise modules are redirected (``exercises.<name>.<module>``); the
packages ``exercises`` and ``exercises.<name>``, the visible tests
(``test_*``) and ``conftest`` always come from the repository, so the course's
own tests run against whichever submission is active.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ENV_VAR = "COURSE_SUBMISSION"
PACKAGE = "exercises"
# What tools leave beside the code: bytecode, notebook checkpoints, test caches,
# version control and virtual environments. Every walk over a submission or the
# course's folders (the grader's copy and hash of a submission, the grader's own
# version hash, the Gradescope bundle, the student release) leaves them out.
SKIPPED_FOLDERS = frozenset({"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".git", ".venv"})
SKIPPED_SUFFIXES = frozenset({".pyc"})
# The repository's submissions that every verb taking a submission knows by name, from any working directory.
REPOSITORY_FOLDERS = ("reference", PACKAGE)


def repo_root() -> Path:
    """The course repository that holds this package (``course/..``)."""
    return Path(__file__).resolve().parent.parent


def default_submission() -> Path:
    """The repository's own ``exercises/`` directory (the student's working copy)."""
    return repo_root() / PACKAGE


def resolve(path: str | os.PathLike[str]) -> Path:
    """An absolute submission path, checked to be an existing directory.

    A bare ``reference`` or ``exercises`` that does not exist in the working
    directory names the repository's folder, so ``course check reference``
    works from anywhere; a folder of that name in the working directory wins.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      NotADirectoryError: ``path`` is not a directory.
    """
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists() and os.fspath(path) in REPOSITORY_FOLDERS:
        resolved = repo_root() / os.fspath(path)
    if not resolved.exists():
        raise FileNotFoundError(f"submission: {str(path)!r} does not exist")
    if not resolved.is_dir():
        raise NotADirectoryError(f"submission: {str(path)!r} is not a directory")
    return resolved


def is_skipped(relative: Path) -> bool:
    """Whether ``relative`` (a path below the folder being walked) is a tool's leftover, no part of the code."""
    return relative.suffix in SKIPPED_SUFFIXES or not SKIPPED_FOLDERS.isdisjoint(relative.parts)


def active_submission() -> Path:
    """The directory that ``exercises.<name>.<module>`` currently loads from."""
    value = os.environ.get(ENV_VAR)
    return resolve(value) if value else default_submission()


def exercise_module(name: str):
    """The active submission's module of exercise ``name`` (``exercises.<name>.<name>``)."""
    install()
    return importlib.import_module(f"{PACKAGE}.{name}.{name}")


def _is_redirected(fullname: str) -> bool:
    parts = fullname.split(".")
    return (
        len(parts) == 3
        and parts[0] == PACKAGE
        and not parts[2].startswith("test_")
        and parts[2] != "conftest"
    )


class SubmissionFinder(importlib.abc.MetaPathFinder):
    """Loads ``exercises.<name>.<module>`` from the active submission."""

    def find_spec(self, fullname, path=None, target=None):
        if not _is_redirected(fullname):
            return None
        root = active_submission()
        _, exercise, module = fullname.split(".")
        file = root / exercise / f"{module}.py"
        if not file.is_file():
            if root == default_submission():
                return None  # let the ordinary import machinery report it
            raise ModuleNotFoundError(
                f"the active submission {root} has no {exercise}/{module}.py "
                f"(needed for {fullname}; set by {ENV_VAR})",
                name=fullname,
            )
        return importlib.util.spec_from_file_location(fullname, file)


_FINDER = SubmissionFinder()


def install() -> None:
    """Puts the finder first on ``sys.meta_path`` (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def activate(path: str | os.PathLike[str]) -> Path:
    """Makes ``path`` the active submission for this process and its children.

    Exercise modules imported before are dropped from ``sys.modules`` so the
    next import loads the new submission's code. Objects already imported from
    the old one keep pointing at it: re-import after switching.

    Returns:
      The resolved submission directory.
    """
    root = resolve(path)
    os.environ[ENV_VAR] = str(root)
    install()
    _forget_exercise_modules()
    return root


def _forget_exercise_modules() -> None:
    for name in [n for n in sys.modules if _is_redirected(n)]:
        del sys.modules[name]


@contextlib.contextmanager
def active(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Activates ``path`` inside a ``with`` block and restores the previous submission after it."""
    previous = os.environ.get(ENV_VAR)
    try:
        yield activate(path)
    finally:
        if previous is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous
        _forget_exercise_modules()
