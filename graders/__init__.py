"""The autograder: hidden suites that grade a submission in a sandboxed worker.

``graders.grade(submission, ...)`` (``course grade``) runs the suites of
``graders/suites/`` (one per exercise; see ``graders/README.md``) against a
submission and returns a :class:`GradingResult`, written as Gradescope's
``results.json``, the raw pytest-json-report and the project's ``score.json``.

Wings: ``engine`` (``grade``, the pytest plugin, the worker's client and
sandbox, comparisons), ``runtime`` (what runs in the worker), ``results`` (the
score model and its writers); around them ``batch`` (a class), ``cluster`` (a
class on Dask's workers), ``autograder`` (the Gradescope bundle), ``cli`` (the
``course`` verbs) and ``suites``.
"""

from graders.engine.grading import grade, graded_exercises
from graders.engine.sandbox import Limits
from graders.results.scores import Case, ExerciseScore, GradingResult, load

__all__ = ["Case", "ExerciseScore", "GradingResult", "Limits", "grade", "graded_exercises", "load"]
