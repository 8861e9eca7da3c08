"""``course autograder --gradescope OUT.zip``: a Gradescope autograder bundle, and what it runs.

The bundle (Gradescope unpacks it into ``/autograder/source``) holds:

- ``setup.sh``, ``bootstrap.lock`` and ``requirements.lock`` (from
  ``graders/templates/``; ``course lock-grader`` writes the locks): the image's
  Python installs uv (``bootstrap.lock``), uv installs the Python that jax
  needs and the grading dependencies only, exact versions with their hashes
  (``requirements.lock``), into ``$AUTOGRADER_ENV`` (default
  ``/opt/course-grader``);
- ``run_autograder`` (from ``graders/templates/``): runs ``python -m
  graders.autograder`` with that environment's Python on this ``source``
  folder, which grades ``<root>/submission`` with :func:`graders.grade` and
  writes ``<root>/results/results.json`` (the script writes one itself when
  the grader cannot start);
- ``course/``, ``exercises/``, ``graders/``, ``reference/`` and
  ``pyproject.toml``: the grader and what it imports;
- ``autograder.json``: the seed and exercises fixed when the bundle was built,
  so every student gets the same inputs.

The root is ``/autograder`` unless ``AUTOGRADER_ROOT`` says otherwise (the
project's tests run a bundle in a temporary folder). Gradescope runs the
script as root, so the grader runs the student's code under bubblewrap where
the image allows namespaces, else as an unprivileged user of its own
(:mod:`graders.engine.sandbox`; the level is in ``results.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
import zipfile
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from course import submission as submissions
from course.folders import replacing_file
from course.seeds import check_seed, draw_seed
from graders.engine import grading
from graders.results import gradescope
from graders.results.scores import GradingResult, RunStatus, write_json

BUNDLED = ("course", "exercises", "graders", "reference")
CONFIG_FILE = "autograder.json"
ROOT_ENV = "AUTOGRADER_ROOT"
# Gradescope's two entry points, kept as files in graders/templates/ (its image setup, then one grading).
TEMPLATES = files("graders") / "templates"
SCRIPTS = ("setup.sh", "run_autograder")
LOCKS = ("bootstrap.lock", "requirements.lock")


def build_bundle(out: str | os.PathLike[str], *, seed: int | None = None, exercises: Sequence[str] | None = None) -> Path:
    """Writes the Gradescope autograder zip to ``out``; returns its path.

    Args:
      seed: the seed of every student's inputs (default: drawn now, recorded in the bundle).
      exercises: the exercises graded (default: every one with a suite).

    Raises:
      ValueError: ``out`` does not end in ``.zip``, or ``seed`` is out of range.
      KeyError: an unknown exercise, or one without a grader suite.
    """
    path = Path(out)
    if path.suffix != ".zip":
        raise ValueError(f"--gradescope: expected a path ending in .zip, got {str(out)!r}")
    seed = draw_seed() if seed is None else check_seed(seed)
    names = grading.to_grade(exercises)
    root = submissions.repo_root()
    # Written beside it and renamed when whole: a failed build never leaves a bundle that looks ready to upload.
    with replacing_file(path) as new, zipfile.ZipFile(new, "w", zipfile.ZIP_DEFLATED) as bundle:
        for script in SCRIPTS:
            _add_text(bundle, script, (TEMPLATES / script).read_text(), executable=True)
        for lock in LOCKS:
            _add_text(bundle, lock, (TEMPLATES / lock).read_text())
        _add_text(bundle, CONFIG_FILE, json.dumps({"seed": seed, "exercises": names}, indent=1))
        bundle.write(root / "pyproject.toml", "pyproject.toml")
        for top in BUNDLED:
            for file in _files(root / top):
                bundle.write(file, file.relative_to(root).as_posix())
    return path


def _files(folder: Path) -> list[Path]:
    """The files under ``folder`` that the grader needs: no tools' leftovers, and no demo model."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    # Beyond the common skip list, the demo model: it is for students, not for grading.
    return [p for p in files if not submissions.is_skipped(p.relative_to(folder)) and "demo" not in p.relative_to(folder).parts]


def _add_text(bundle: zipfile.ZipFile, name: str, text: str, *, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    bundle.writestr(info, text)


def find_submission(folder: Path, source: Path) -> Path:
    """The exercises folder of an uploaded submission: the upload itself, or its single ``exercises/`` folder.

    Raises:
      ValueError: the folder is a symbolic link or lies inside the bundle's ``source`` (an upload holding
        ``exercises -> ../source/reference`` would be graded as the reference).
    """
    nested = folder / "exercises"
    found = nested if nested.is_dir() or nested.is_symlink() else folder
    if found.is_symlink() or folder.is_symlink():
        raise ValueError(f"submission: {found.name!r} is a symbolic link; upload the files themselves")
    if found.resolve().is_relative_to(source.resolve()):
        raise ValueError(f"submission: {found.name!r} lies inside the autograder's own files")
    return found


def run(root: Path, source: Path) -> tuple[dict, bool]:
    """Grades ``root/submission`` with the bundle in ``source``; writes ``root/results/results.json``.

    Returns:
      The ``results.json`` document, and whether the grading itself went well (no grader error).
    """
    started = time.monotonic()
    config = json.loads((source / CONFIG_FILE).read_text())
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = grading.grade(find_submission(root / "submission", source), exercises=config["exercises"], seed=config["seed"])
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:  # nothing gradable was uploaded: a zero that says why
        result = GradingResult(submission=str(root / "submission"), seed=config["seed"], exercises=())
        ok = True
        document = {**gradescope.results(result, execution_time=time.monotonic() - started),
                    "score": 0, "output": f"Your submission could not be graded: {error}"}
    except Exception as error:  # the grader's side (a sandbox that cannot start, a full disk): never the student's zero
        result = GradingResult(submission=str(root / "submission"), seed=config["seed"], exercises=(),
                               status=RunStatus.GRADER_ERROR, errors=(repr(error),))
        ok = False
        document = gradescope.results(result, execution_time=time.monotonic() - started)
        print(repr(error))
    else:
        document = gradescope.results(result, execution_time=time.monotonic() - started)
        ok = result.status == RunStatus.OK
        if not ok:  # for the staff: Gradescope shows stdout to instructors only (stdout_visibility hidden)
            print("\n".join(result.errors)[-8000:])
    write_json(results_dir / "results.json", document)
    return document, ok


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m graders.autograder [--root DIR]``: what the bundle's ``run_autograder`` runs.

    Exits 1 after writing ``results.json`` when the grader failed (Gradescope shows it to the staff), else 0.
    """
    parser = argparse.ArgumentParser(description="Grade a Gradescope submission with this bundle.")
    parser.add_argument("--root", type=Path, default=Path(os.environ.get(ROOT_ENV, "/autograder")),
                        help="the Gradescope root (default: $AUTOGRADER_ROOT or /autograder)")
    args = parser.parse_args(argv)
    if not (args.root / "submission").is_dir():
        parser.error(f"--root: {args.root / 'submission'} is not a folder")
    document, ok = run(args.root, submissions.repo_root())
    print(f"Points {document['score']:g}/{sum(t['max_score'] for t in document['tests']):g}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
