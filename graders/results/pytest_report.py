"""The grader's pytest-json-report output, converted into the score model.

Each test's ``user_properties["grader"]`` record (written by
:mod:`graders.engine.plugin`) gives its exercise, points and message; the outcome
decides the points. An exercise in which any case saw a forbidden routine
earns nothing. A case marked ``requires_values(function)`` counts only once
the exercise's ``values(function)`` cases pass: while one of them fails, it
fails too, naming that case (see :func:`gate`). A suite that failed to import,
or a case with a grader error, makes the run's status ``grader_error``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from graders.results.scores import Case, CaseStatus, ExerciseScore, GradingResult, RunStatus


def _record(test: dict) -> dict | None:
    return next((p["grader"] for p in test.get("user_properties", []) if "grader" in p), None)


def _case(test: dict, record: dict) -> Case:
    # The test's outcome is pytest's word; the record's status is the plugin's (a CaseStatus).
    status = CaseStatus(record["status"]) if test.get("outcome") != "passed" else CaseStatus.PASSED
    if status == CaseStatus.PASSED and test.get("outcome") != "passed":  # failed without a record: e.g. a teardown error
        status = CaseStatus.GRADER_ERROR
    seconds = sum(test.get(stage, {}).get("duration", 0.0) for stage in ("setup", "call", "teardown"))
    return Case(
        exercise=record["exercise"], name=test["nodeid"].split("::", 1)[-1],
        points=record["points"] if status == CaseStatus.PASSED else 0, max_points=record["points"], status=status,
        message=record["message"], hint=record["hint"], visibility=record["visibility"], seconds=round(seconds, 4),
        forbidden=tuple(record["forbidden"]), detail=record["detail"], leaderboard=tuple(record.get("leaderboard", ())),
    )


def _finite(timings: dict) -> dict:
    """``timings`` with any value that is not a finite number as ``None`` (score files are strict JSON: no NaN)."""
    return {k: v if isinstance(v, int | float) and math.isfinite(v) else None for k, v in timings.items()}


def gate(cases: list[Case], values: Mapping[str, str], requires: Mapping[str, str]) -> list[Case]:
    """``cases`` (one exercise's) with each passed case that requires a function's values failed while they are wrong.

    A case that requires ``function``'s values scores only when no ``values``
    case of ``function`` failed (and one ran): a submission that checks its
    arguments and returns constants earns nothing. A values case with a grader
    error gates nothing: the run's status says the grade cannot be trusted
    already, and a student never loses points for the grader's fault.

    Args:
      values: case name -> the function whose values it compares.
      requires: case name -> the function whose values it requires.
    """
    def gated(case: Case) -> Case:
        function = requires.get(case.name)
        if function is None or case.status != CaseStatus.PASSED:
            return case
        evidence = [c for c in cases if values.get(c.name) == function]
        failed = next((c for c in evidence if c.status == CaseStatus.FAILED), None)
        if evidence and failed is None:
            return case
        why = ("none of its cases ran" if failed is None else f"see {failed.name}" if failed.visibility == "visible"
               else "a case not shown yet says where")  # a hidden case's name is not the student's to read
        message = f"counts only once {function} computes correct values ({why})"
        return replace(case, points=0, status=CaseStatus.FAILED, message=message)

    return [gated(c) for c in cases]


def convert(report: dict, *, submission: str, seed: int, exercises: list[str]) -> GradingResult:
    """The :class:`GradingResult` of one grader run.

    Args:
      report: the parsed pytest-json-report file.
      submission: the graded folder, as shown to people.
      seed: the run's seed.
      exercises: the graded exercises, in the order to report them.
    """
    cases: dict[str, list[Case]] = {name: [] for name in exercises}
    # Per exercise, case name -> the function whose values it compares, or whose values it requires.
    values: dict[str, dict[str, str]] = {name: {} for name in exercises}
    requires: dict[str, dict[str, str]] = {name: {} for name in exercises}
    errors = []
    for test in report.get("tests", []):
        record = _record(test)
        if record is None or record["exercise"] not in cases:
            errors.append(f"{test.get('nodeid')}: a test without a grading record")
            continue
        case = _case(test, record)
        cases[case.exercise].append(case)
        for marks, key in ((values, "values"), (requires, "requires_values")):
            if record[key] is not None:
                marks[case.exercise][case.name] = record[key]
        if case.status == CaseStatus.GRADER_ERROR:
            errors.append(f"{case.exercise}: {case.name}: grader error\n{case.detail}")
    for collector in report.get("collectors", []):
        if collector.get("outcome") == "failed":
            errors.append(f"{collector.get('nodeid')}: the suite failed to load\n{collector.get('longrepr', '')}")
    scored = []
    for name in exercises:
        forbidden = tuple(sorted({r for c in cases[name] for r in c.forbidden}))
        if forbidden:
            why = f"no points: the exercise calls {', '.join(forbidden)}"
            cases[name] = [
                Case(**{**vars(c), "points": 0, "status": CaseStatus.FAILED if c.status == CaseStatus.PASSED else c.status,
                        "message": c.message or why, "forbidden": forbidden})
                for c in cases[name]
            ]
        cases[name] = gate(cases[name], values[name], requires[name])
        if not cases[name] and not errors:
            errors.append(f"{name}: the suite has no cases")
        scored.append(ExerciseScore(name, tuple(cases[name]), forbidden))
    grader = report.get("grader", {})
    return GradingResult(
        submission=submission, seed=seed, exercises=tuple(scored), status=RunStatus.GRADER_ERROR if errors else RunStatus.OK,
        errors=tuple(errors), device=grader.get("device", {}), versions=grader.get("versions", {}),
        timings=_finite(grader.get("timings", {})), worker=grader.get("worker", {}),
    )
