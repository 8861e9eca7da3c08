"""``python -m graders.prairielearn``: PrairieLearn's external grader, from the same score model as Gradescope's.

PrairieLearn's external grading contract: the submitted files are in
``<root>/student`` (``<root>`` is ``/grade`` in the grading container), the
question's data in ``<root>/data/data.json``, and the grader writes
``<root>/results/results.json``: ``gradable`` (false when nothing could be
graded: the attempt does not count), ``score`` (a fraction, 0 to 1),
``message`` and ``tests`` (each ``name``, ``description``, ``points``,
``max_points``, ``message``), and ``format_errors`` when not gradable. Cases a
suite marks other than ``visible`` count in the score but are not listed,
since PrairieLearn shows every test it is given. PrairieLearn reads at most
1 MB, so each message is cut to :data:`MAX_MESSAGE` characters.

The submission is the ``student`` folder shaped like ``exercises/`` (or
holding one ``exercises/``), or the exercise modules uploaded as flat files
(``attention.py``), which are laid out as ``attention/attention.py``. The
exercises and the seed come from the question's ``params`` (``exercises``,
``seed``), else from the command line; the seed defaults to 0, so that every
student of a question gets the same inputs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from course import catalog
from course.seeds import check_seed
from course.submission import repo_root
from graders.autograder import find_submission
from graders.engine import grading
from graders.results.scores import GradingResult, RunStatus, write_json

ROOT = Path("/grade")
MAX_MESSAGE = 4000  # characters per test: a few hundred cases stay well within PrairieLearn's 1 MB results.json


def results(result: GradingResult) -> dict:
    """PrairieLearn's ``results.json`` for a grading run that produced a result."""
    ok = result.status == RunStatus.OK
    shown = [c for e in result.exercises for c in e.cases if c.visibility == "visible"]
    lines = [f"{e.name}: {e.score:g}/{e.max_score:g}" for e in result.exercises]
    hidden = sum(len(e.cases) for e in result.exercises) - len(shown)
    if hidden:
        lines.append(f"{hidden} more cases are graded but not listed.")
    if not ok:
        lines.append("The grader failed; this is not your fault, and this attempt does not count.")
    return {
        "gradable": ok,
        "score": result.score / result.max_score if ok and result.max_score else 0.0,
        "message": "\n".join(lines),
        "tests": [{"name": f"{c.exercise}: {c.name}", "description": c.exercise, "points": c.points, "max_points": c.max_points,
                   "message": (c.message + (f"\nHint: {c.hint}" if c.hint and c.hint not in c.message else ""))[:MAX_MESSAGE]}
                  for c in shown],
    }


def not_gradable(why: str) -> dict:
    """PrairieLearn's ``results.json`` when the upload holds nothing to grade (the attempt does not count)."""
    return {"gradable": False, "score": 0.0, "message": f"Your submission could not be graded: {why}", "format_errors": why, "tests": []}


def lay_out(student: Path, scratch: Path) -> Path:
    """The submission folder for ``student``: itself when shaped like ``exercises/``, else its flat modules laid out in ``scratch``.

    Raises:
      ValueError: no exercise module was uploaded, or the folder is a link or lies in the grader's files (as
        :func:`graders.autograder.find_submission`).
    """
    folder = find_submission(student, repo_root())
    if any((folder / e.relpath).is_file() for e in catalog.EXERCISES):
        return folder
    flat = [e for e in catalog.EXERCISES if (folder / f"{e.name}.py").is_file()]
    if not flat:
        raise ValueError("no exercise module found (expected e.g. attention.py or attention/attention.py)")
    for exercise in flat:
        (scratch / exercise.name).mkdir(parents=True)
        shutil.copyfile(folder / f"{exercise.name}.py", scratch / exercise.relpath)
    return scratch


def run(root: Path, *, exercises: Sequence[str] | None = None, seed: int = 0) -> tuple[dict, bool]:
    """Grades ``root/student``; writes ``root/results/results.json``.

    Returns:
      The document, and whether the grading itself went well (no grader error).
    """
    data_file = root / "data" / "data.json"
    params = json.loads(data_file.read_text()).get("params", {}) if data_file.is_file() else {}
    names = params.get("exercises", exercises)
    seed = check_seed(params.get("seed", seed))
    (root / "results").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            result = grading.grade(lay_out(root / "student", Path(scratch)), exercises=names, seed=seed)
        except (FileNotFoundError, NotADirectoryError, ValueError) as error:  # nothing gradable was uploaded
            document, ok = not_gradable(str(error)), True
        except Exception as error:  # the grader's side (a sandbox that cannot start): never the student's zero
            document, ok = results(GradingResult(submission=str(root / "student"), seed=seed, exercises=(),
                                                 status=RunStatus.GRADER_ERROR, errors=(repr(error),))), False
            print(repr(error))
        else:
            document, ok = results(result), result.status == RunStatus.OK
            if not ok:  # for the staff: the grading job's log
                print("\n".join(result.errors)[-8000:])
    write_json(root / "results" / "results.json", document)
    return document, ok


def main(argv: Sequence[str] | None = None) -> None:
    """Grades a PrairieLearn submission; exits 1 after writing ``results.json`` when the grader failed."""
    parser = argparse.ArgumentParser(description="Grade a PrairieLearn submission (external grader).")
    parser.add_argument("--root", type=Path, default=ROOT, help="the grading folder (default: /grade)")
    parser.add_argument("-e", "--exercise", dest="exercises", action="append", choices=grading.graded_exercises(),
                        help="only this exercise (repeatable; default: the question's params, else every one)")
    parser.add_argument("--seed", type=int, default=0, help="the inputs' seed when the question's params give none (default: 0)")
    args = parser.parse_args(argv)
    try:
        document, ok = run(args.root, exercises=args.exercises, seed=args.seed)
    except ValueError as error:  # a bad seed in the question's params or on the command line
        parser.error(str(error))
    print(f"score {document['score']:.3f}, gradable {document['gradable']}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
