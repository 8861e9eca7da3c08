"""The autograder: hidden suites that grade a submission in a sandboxed worker.

``graders.grade(submission, ...)`` (``course grade``) runs the suites of
``graders/suites/`` (one per exercise; see ``graders/README.md``) against a
submission and returns a :class:`GradingResult`, written as Gradescope's
``results.json``, the raw pytest-json-report and the project's ``score.json``.

Modules: ``grading`` (the entry point, ``grade``), ``plugin`` (pytest markers and
fixtures), ``client`` (the grader's side of the worker), ``sandbox``
(starting, limiting and stopping the worker), ``runtime`` (what runs in the
worker), ``compare`` (comparisons and known-mistake hints), ``failures``,
``scores`` (the score model), ``pytest_report`` and ``gradescope`` (its
readers and writers).
"""

from graders.engine.grading import grade, graded_exercises
from graders.engine.sandbox import Limits
from graders.results.scores import Case, ExerciseScore, GradingResult, load

__all__ = ["Case", "ExerciseScore", "GradingResult", "Limits", "grade", "graded_exercises", "load"]
