"""Gradescope's autograder format (``results.json``) from the score model.

Fields follow Gradescope's "Autograder Specifications": top-level ``score``,
``execution_time``, ``output`` and ``tests``; each test has ``name``,
``score``, ``max_score``, ``status`` (``passed`` or ``failed``), ``output``
and ``visibility``.
"""

from __future__ import annotations

from graders.results.scores import CaseStatus, GradingResult, RunStatus


def results(result: GradingResult, *, execution_time: float) -> dict:
    """The ``results.json`` document for ``result``."""
    tests = [
        {
            "name": f"{case.exercise}: {case.name}",
            "score": case.points,
            "max_score": case.max_points,
            # Gradescope knows passed and failed only: a grader error shows as failed (the run's output says why).
            "status": CaseStatus.PASSED if case.status == CaseStatus.PASSED else CaseStatus.FAILED,
            "output": case.message + (f"\nHint: {case.hint}" if case.hint and case.hint not in case.message else ""),
            "visibility": case.visibility,
        }
        for exercise in result.exercises
        for case in exercise.cases
    ]
    summary = [f"{e.name}: {e.score:g}/{e.max_score:g}" for e in result.exercises]
    if result.status != RunStatus.OK:
        summary.append("The grader failed; this is not your fault, and the course staff has been told.")
    if result.isolation:
        summary.append(f"Sandbox: {result.isolation}")
    return {
        "score": result.score,
        "execution_time": round(execution_time, 3),
        "output": "\n".join(summary),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"isolation": result.isolation},
    }
