"""``course check``: run the visible tests of every exercise against a submission.

The tests are the course's own (``exercises/<name>/test_*.py`` of this
repository); the code under test is the submission's, switched in through
``COURSE_SUBMISSION``. pytest runs in a child process so that the submission's
imports never touch this one, and reports through pytest-json-report.

Each test that did not pass is either *progress* (the exercise runs, and is not
right yet) or *broken* (it does not run); :func:`is_broken` draws the line, so
that the student repository's CI (``course check --progress``) stays green
while the work goes on and turns red when the code stops running.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from course import catalog, submission
from course.notebook_helpers import NOT_IMPLEMENTED
from course.pytest_child import run_pytest

# The exception types a failed test may end with and still be progress: the visible
# tests' comparisons (course.testing), their asserts and pytest.raises(match=...)
# raise AssertionError when the values or messages differ.
PROGRESS_EXCEPTIONS = frozenset({"AssertionError"})
DID_NOT_RAISE = "Failed: DID NOT RAISE"  # pytest.raises around code that does not make its check yet


@dataclass(frozen=True)
class TestOutcome:
    nodeid: str
    outcome: str  # passed, failed, error or skipped
    message: str  # the first line of the failure, empty when passed
    broken: bool = False  # it failed by breakage, not progress (see is_broken)


@dataclass(frozen=True)
class ExerciseCheck:
    exercise: catalog.Exercise
    outcomes: tuple[TestOutcome, ...]

    @property
    def passed(self) -> int:
        return sum(o.outcome == "passed" for o in self.outcomes)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total

    @property
    def first_failure(self) -> TestOutcome | None:
        return next((o for o in self.outcomes if o.outcome != "passed"), None)

    @property
    def broken(self) -> tuple[TestOutcome, ...]:
        """The outcomes that say the exercise does not run (see :func:`is_broken`)."""
        return tuple(o for o in self.outcomes if o.broken)


def is_broken(test: dict) -> bool:
    """Whether one test of a pytest-json-report ``tests`` list failed by breakage rather than progress.

    Progress: the test passed or was skipped, or its call failed with the
    stub's message (``not implemented yet: ...``, which the visible tests'
    conftest makes the whole report), with an ``AssertionError`` (the type
    that ends the call's ``traceback``: a comparison that found other values,
    an assert of the test) or with pytest.raises's ``DID NOT RAISE`` (an
    argument check the code does not make yet).

    Broken: everything else: an exception of another type from the code under
    test (``ValueError``, ``TypeError``, a shape error of JAX), a timeout, or an
    error in a fixture's setup or teardown (outcome ``error``). A test module
    that fails to import (a syntax or import error in the exercise) is broken
    too; :func:`run_visible_tests` records each test it lost, from the report's
    ``collectors`` and :func:`visible_test_ids`.
    """
    if test["outcome"] in ("passed", "skipped", "xfailed", "xpassed"):
        return False
    call = test.get("call", {})
    if test["outcome"] != "failed" or not call:
        return True
    if call.get("longrepr", "").startswith(NOT_IMPLEMENTED):
        return False
    exception = (call.get("traceback") or [{}])[-1].get("message")
    return not (exception in PROGRESS_EXCEPTIONS or call.get("crash", {}).get("message", "").startswith(DID_NOT_RAISE))


def _first_line(report: dict) -> str:
    """The most telling line of a failed test's report."""
    for stage in ("setup", "call", "teardown"):
        longrepr = report.get(stage, {}).get("longrepr")
        crash = report.get(stage, {}).get("crash", {}).get("message")
        if crash:
            return crash.strip().splitlines()[0]
        if longrepr:
            lines = [line for line in longrepr.strip().splitlines() if line.startswith("E ")]
            return (lines[0][1:] if lines else longrepr.strip().splitlines()[-1]).strip()
    return report.get("outcome", "")


# The module each exercise's folder holds in a stand-in submission: any name imported from it is a class that does
# nothing, so the visible tests' modules import and their tests are collected whatever the real submission holds.
STAND_IN = """class StandIn:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return self


def __getattr__(name):
    return StandIn
"""


def import_error_message(longrepr: str, target_dir: Path) -> str:
    """The line that says why a test module did not import, with the submission's file and line that broke it.

    A syntax error names its own place (``File "...", line N``); another
    exception the last traceback entry in the submission (``path:N: in <module>``):
    ``"SyntaxError in attention/attention.py, line 97: invalid syntax"``. An
    error with no place in the submission (a missing module) keeps its own line.
    """
    lines = longrepr.strip().splitlines()
    errors = [re.sub(r"^E\s+", "", line) for line in lines if line.startswith("E ")]  # pytest's "E   " margin
    last = errors[-1] if errors else (lines[-1] if lines else "the test module did not import")
    found = re.match(r"(?P<type>[\w.]+): ?(?P<message>.*)$", last)
    places = [m for m in map(re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)').search, errors) if m]
    places += reversed([m for m in map(re.compile(r"^(?P<file>\S+\.py):(?P<line>\d+): in ").match, lines) if m])
    root = submission.repo_root()
    for place in places if found is not None else ():
        file = (root / place["file"]).resolve()  # pytest writes the paths under its rootdir relative to it
        if file.is_relative_to(target_dir):
            return f"{found['type']} in {file.relative_to(target_dir)}, line {place['line']}: {found['message']}"
    return last


def visible_test_ids(names: list[str], *, timeout: float = 300.0) -> dict[str, list[str]]:
    """The node ids of the visible tests of the exercises ``names``, by test file, whatever the submission.

    pytest collects them over a stand-in submission (:data:`STAND_IN` for
    every exercise's module), so a submission whose module does not import
    still counts every test it lost. A test file that does not collect even
    so (an error in the test file itself) is left out: its caller counts it as one.
    """
    root = submission.repo_root()
    with tempfile.TemporaryDirectory(prefix="course-stand-in-") as stand_in:
        for exercise in catalog.EXERCISES:
            (Path(stand_in) / exercise.name).mkdir()
            (Path(stand_in) / exercise.name / f"{exercise.name}.py").write_text(STAND_IN)
        env = {**os.environ, submission.ENV_VAR: stand_in, "PYTHONDONTWRITEBYTECODE": "1"}
        report, _ = run_pytest(["--collect-only", f"--rootdir={root}", *(str(root / "exercises" / n) for n in names)],
                               cwd=root, env=env, timeout=timeout)
    found: dict[str, list[str]] = {}
    for collector in (report or {}).get("collectors", []):
        for item in collector.get("result", []):
            if item.get("type") == "Function":
                found.setdefault(collector["nodeid"], []).append(item["nodeid"])
    return found


def run_visible_tests(
    target: str | os.PathLike[str] | None = None,
    names: list[str] | None = None,
    *,
    timeout: float = 600.0,
) -> list[ExerciseCheck]:
    """Runs the visible tests of the chosen exercises against ``target``.

    Args:
      target: a submission directory; ``None`` for the repository's ``exercises/``.
      names: exercise names (default: every exercise of the catalogue).
      timeout: seconds for the whole pytest run.

    Returns:
      One :class:`ExerciseCheck` per exercise, in catalogue order.

    Raises:
      KeyError: an unknown exercise name.
      FileNotFoundError, NotADirectoryError: ``target`` is not a directory.
      RuntimeError: pytest could not run the tests, or ran past ``timeout``
        (no report written).
    """
    root = submission.repo_root()
    chosen = [catalog.get(n) for n in names] if names else list(catalog.EXERCISES)
    target_dir = submission.resolve(target) if target is not None else submission.default_submission()
    env = {**os.environ, submission.ENV_VAR: str(target_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    # --tb=auto (pytest's default, pinned): the traceback's last entry then names the exception's type (is_broken).
    args = ["--continue-on-collection-errors", "--timeout=120", "--tb=auto", f"--rootdir={root}",
            *(str(root / "exercises" / e.name) for e in chosen)]
    report, log = run_pytest(args, cwd=root, env=env, timeout=timeout)
    if report is None:
        raise RuntimeError(f"pytest did not run:\n{log}")
    by_exercise: dict[str, list[TestOutcome]] = {e.name: [] for e in chosen}
    for test in report.get("tests", []):
        name = test["nodeid"].split("/")[1]
        message = "" if test["outcome"] == "passed" else _first_line(test)
        by_exercise[name].append(TestOutcome(test["nodeid"], test["outcome"], message, is_broken(test)))
    # A test module that did not import (a syntax or import error) lost its tests: each counts, as broken, so that the
    # number of tests (`course check --progress`'s Points X/Y) is the same whatever the submission.
    failed = [c for c in report.get("collectors", []) if c.get("outcome") == "failed"]
    lost = visible_test_ids(sorted({c["nodeid"].split("/")[1] for c in failed})) if failed else {}
    for collector in failed:
        name = collector["nodeid"].split("/")[1]
        message = import_error_message(collector.get("longrepr", ""), target_dir)
        for nodeid in lost.get(collector["nodeid"], [collector["nodeid"]]):
            by_exercise[name].append(TestOutcome(nodeid, "error", message, broken=True))
    return [ExerciseCheck(e, tuple(by_exercise[e.name])) for e in chosen]
