"""``course release``: write the student repository, holding nothing hidden.

The student repository is two folders copied whole, ``course/`` (the shared
code, the notebooks and the ``course`` command) and ``exercises/`` (stubs,
visible tests and fixtures), and what ``templates/`` makes of the rest: a
student README, a ``pyproject.toml`` (the course's, less the instructor's
tools and verbs) and a CI workflow that runs the visible tests. Nothing else is
copied, so ``reference/``, ``graders/`` and ``authoring/`` stay out; as a second
line of defence, :func:`leaks` scans a release for their folders and hidden
text, and ``release`` refuses to finish when it finds any.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import tomllib
from pathlib import Path

import jinja2

from authoring import stubs
from course import catalog
from course.folders import replacing
from course.submission import is_skipped, repo_root

SHIPPED = ("course", "exercises")
HIDDEN = ("reference", "graders", "authoring")
# The instructor's tools (this project's tests, stub and notebook building): not in the student's dependencies.
INSTRUCTOR_ONLY = frozenset({"django-static-mathjax", "import-linter", "jinja2", "jupytext", "packaging"})
TEMPLATES = Path(__file__).resolve().parent / "templates"
# Binaries scanned byte for byte all the same: serialized programs (the compiled demo) hold
# names, and would hold source locations if they were not stripped (authoring/demo.py).
PROGRAMS = frozenset({".jaxexport"})
MIN_SECRET_LENGTH = 24  # shorter solution lines ("return x") are too generic to be a leak


class ReleaseError(RuntimeError):
    """The release cannot be written, or would leak hidden material."""


def exercise_table() -> str:
    """The exercises as a Markdown table, in teaching order."""
    rows = ["| exercise | level | you implement |", "| --- | --- | --- |"]
    rows += [f"| `exercises/{e.name}/` | {e.level} | {', '.join(f'`{f}`' for f in e.functions)} |" for e in catalog.EXERCISES]
    return "\n".join(rows)


def requirement_name(requirement: str) -> str:
    """The normalized project name of a dependency string (``"Jinja2>=3.1"`` -> ``"jinja2"``)."""
    name = re.split(r"[^A-Za-z0-9._-]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def student_pyproject(root: Path) -> str:
    """The student repository's ``pyproject.toml`` (``templates/student_pyproject.toml.j2``).

    The course's name, version, description, Python and dependencies, less the
    instructor's tools (:data:`INSTRUCTOR_ONLY`); the shipped packages and their
    data; and no ``course.commands`` entry points, so the student's ``course``
    has the student's verbs only.
    """
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    project = pyproject["project"]
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
    environment.filters["toml"] = json.dumps  # a JSON string, or list of strings, is valid TOML as it is
    return environment.get_template("student_pyproject.toml.j2").render(
        project=project,
        dependencies=[d for d in project["dependencies"] if requirement_name(d) not in INSTRUCTOR_ONLY],
        packages=[f"{package}*" for package in SHIPPED],
        package_data={p: data for p, data in pyproject["tool"]["setuptools"]["package-data"].items() if p in SHIPPED},
    )


def secrets(root: Path) -> dict[str, str]:
    """Text that must never reach students, each with where it comes from.

    Every distinctive line of a solution block in ``reference/`` (one that the
    stub's docstrings and hints do not already show), and the name
    of every hidden grader test (``graders/**/test_*.py``) that the visible
    tests do not also use.
    """
    found: dict[str, str] = {}
    for exercise in catalog.EXERCISES:
        source = (root / "reference" / exercise.relpath).read_text()
        stub = stubs.make_stub(source, exercise.relpath)  # its docstrings and hints are public
        inside = False
        for number, line in enumerate(source.splitlines(), start=1):
            if stubs.BEGIN.match(line) or stubs.END.match(line):
                inside = bool(stubs.BEGIN.match(line))
                continue
            text = line.strip()
            if inside and len(text) >= MIN_SECRET_LENGTH and text not in stub and not text.startswith("#"):
                found[text] = f"reference/{exercise.relpath}:{number}"
    visible = {n.name for p in (root / "exercises").rglob("test_*.py") for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.FunctionDef)}
    for suite in sorted((root / "graders").rglob("test_*.py")) if (root / "graders").is_dir() else []:
        for node in ast.walk(ast.parse(suite.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and node.name not in visible:
                found[node.name] = f"{suite.relative_to(root)} (hidden test)"
    return found


def leaks(out_dir: Path, root: Path | None = None) -> list[str]:
    """Every place in ``out_dir`` that holds hidden text or a hidden folder, as readable lines."""
    root = root or repo_root()
    found = [f"{p.relative_to(out_dir)}: a hidden folder" for p in out_dir.rglob("*") if p.is_dir() and p.name in HIDDEN]
    hidden = secrets(root)
    # A hidden test name counts as a whole identifier only: a hidden "test_x" is
    # no leak inside a visible "test_x_matches_reference".
    pattern = re.compile("|".join(
        rf"(?<![\w]){re.escape(s)}(?![\w])" if s.isidentifier() else re.escape(s)
        for s in sorted(hidden, key=len, reverse=True)))
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            if path.suffix not in PROGRAMS:
                continue  # binary: fixtures, the demo weights, images
            text = path.read_bytes().decode("latin-1")  # byte for byte, so a solution line found in it reads as text
        for match in pattern.finditer(text):
            found.append(f"{path.relative_to(out_dir)}: holds {match.group()!r} from {hidden[match.group()]}")
    return found


def edited_stubs(root: Path) -> list[str]:
    """One line per stub of ``root/exercises`` that differs from the one generated from ``root/reference``."""
    return [f"{u.path.relative_to(root)} differs from the stub generated from reference/ (edited by hand, or the reference changed)"
            for u in stubs.sync(root / "reference", root / "exercises", write=False) if u.changed]


def release(out_dir: str | Path, *, force: bool = False, allow_edited_stubs: bool = False, root: Path | None = None) -> Path:
    """Writes the student repository to ``out_dir``.

    The release is written and scanned beside ``out_dir``, and takes its place
    only when complete: a refused or failed release leaves ``out_dir`` as it was.

    Args:
      out_dir: a new or empty directory (a ``.git`` in it does not count, and is kept).
      force: replace the contents of a non-empty ``out_dir`` (all but its ``.git``).
      allow_edited_stubs: release ``exercises/`` as it is, even where a stub
        differs from the one generated from ``reference/``.
      root: the course repository (default: this one).

    Returns:
      ``out_dir``.

    Raises:
      ReleaseError: ``out_dir`` is not empty (without ``force``), a stub differs
        from the generated one (without ``allow_edited_stubs``), or the
        release would leak hidden text.
    """
    root = root or repo_root()
    out_dir = Path(out_dir).resolve()
    if out_dir == root or root in out_dir.parents:
        raise ReleaseError(f"out_dir: {out_dir} is inside the course repository; choose a folder outside it")
    if out_dir.exists() and not force and any(p.name != ".git" for p in out_dir.iterdir()):
        raise ReleaseError(f"out_dir: {out_dir} is not empty; pass --force to replace its contents (its .git is kept)")
    edited = [] if allow_edited_stubs else edited_stubs(root)
    if edited:
        raise ReleaseError("\n".join(edited) + "\nRun `course stubs` to regenerate them (this overwrites the edits), "
                           "or pass --allow-edited-stubs to release them as they are.")
    with replacing(out_dir, keep=(".git",)) as new:  # the student repository's history stays
        for folder in SHIPPED:
            shutil.copytree(root / folder, new / folder, ignore=lambda _, names: [n for n in names if is_skipped(Path(n))])
        readme = (TEMPLATES / "student_README.md").read_text().format(
            title="Introduction to Transformers with JAX", exercise_table=exercise_table())
        (new / "README.md").write_text(readme)
        (new / "pyproject.toml").write_text(student_pyproject(root))
        (new / ".gitignore").write_text("__pycache__/\n*.egg-info/\nruns/\n.ipynb_checkpoints/\n")
        workflow = new / ".github" / "workflows" / "tests.yml"
        workflow.parent.mkdir(parents=True)
        shutil.copyfile(TEMPLATES / "tests.yml", workflow)
        problems = leaks(new, root)
        if problems:
            raise ReleaseError("the release would leak hidden material:\n" + "\n".join(problems[:20]))
        new.chmod(0o755)  # a repository, not a private folder (mkdtemp makes it 0700)
    return out_dir
