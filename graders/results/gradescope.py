"""Gradescope's autograder format (``results.json``) from the score model.

Fields follow Gradescope's "Autograder Specifications": top-level ``score``,
``execution_time``, ``output`` (Markdown: ``output_format`` ``md``, a table of
the exercises), ``visibility``, ``stdout_visibility`` (hidden: the staff's
diagnostics), ``extra_data`` (the seed, the library versions, the device and
the sandbox: what reproduces the grade) and ``tests``; each test has ``name``,
``score``, ``max_score``, ``status`` (``passed`` or ``failed``), ``output``
(plain text, ``output_format`` ``text``: messages quote code and shapes that
Markdown would mangle), ``visibility`` (its suite's marker), ``tags`` (the
exercise) and ``extra_data`` (the grader's own status of the case); and
``leaderboard``, only when a case recorded entries (the suites' ``leaderboard``
fixture: an outcome worth ranking, such as a training exercise's final loss).
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
            "output_format": "text",
            "visibility": case.visibility,
            "tags": [exercise.name],
            "extra_data": {"status": str(case.status), "seconds": case.seconds},
        }
        for exercise in result.exercises
        for case in exercise.cases
    ]
    leaderboard = [entry for exercise in result.exercises for case in exercise.cases for entry in case.leaderboard]
    return {
        "score": result.score,
        "execution_time": round(execution_time, 3),
        "output": summary(result),
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"seed": result.seed, "versions": result.versions, "device": result.device, "isolation": result.isolation},
        **({"leaderboard": leaderboard} if leaderboard else {}),
    }


def summary(result: GradingResult) -> str:
    """The submission's Markdown feedback: a table of the exercises, then what went wrong on the grader's side."""
    lines = ["| exercise | points | cases passed |", "| --- | --- | --- |"]
    lines += [f"| `{e.name}` | {e.score:g}/{e.max_score:g} | {e.passed}/{len(e.cases)} |" for e in result.exercises]
    lines += [f"| **total** | **{result.score:g}/{result.max_score:g}** | |", ""] if result.exercises else []
    if result.status != RunStatus.OK:
        lines.append("**The grader failed**; this is not your fault, and the course staff has been told.")
    if result.isolation:
        lines.append(f"Sandbox: {result.isolation}.")
    return "\n".join(lines)
