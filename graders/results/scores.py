"""The score model: one grading run's results, whatever format they are written in.

:func:`graders.results.pytest_report.convert` builds a :class:`GradingResult` from the
grader's pytest run; writers turn it into files (:mod:`graders.results.gradescope`
for Gradescope's ``results.json``; :meth:`GradingResult.to_json` for the
project's own score file, which :func:`load` reads back).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

SCHEMA = "course-score/1"


class CaseStatus(StrEnum):
    """How one graded case ended."""

    PASSED = "passed"
    FAILED = "failed"  # the submission's fault
    GRADER_ERROR = "grader_error"  # the grader's fault: the case's points cannot be trusted


class RunStatus(StrEnum):
    """Whether a grading run's result can be trusted."""

    OK = "ok"
    GRADER_ERROR = "grader_error"


class SubmissionStatus(StrEnum):
    """What became of one student's submission in a class run (``course grade-all``)."""

    GRADED = "graded"
    REJECTED = "rejected"  # not gradable (a bad zip, an unsafe entry): a zero with its reason
    GRADER_ERROR = "grader_error"


@dataclass(frozen=True)
class Case:
    """One graded case."""

    exercise: str
    name: str  # the test and its parameters, e.g. "test_causal_mask[one]"
    points: float  # earned
    max_points: float
    status: CaseStatus
    message: str = ""  # what the student reads; never reference values
    hint: str | None = None  # the known mistake the outputs match
    visibility: str = "visible"
    seconds: float = 0.0
    forbidden: tuple[str, ...] = ()  # forbidden routines seen while grading the exercise
    detail: str = ""  # for the instructor only: a grader error's traceback
    leaderboard: tuple[dict, ...] = ()  # Gradescope leaderboard entries the case recorded: {"name", "value", "order"}


@dataclass(frozen=True)
class ExerciseScore:
    name: str
    cases: tuple[Case, ...]
    forbidden: tuple[str, ...] = ()  # when not empty, the exercise earns nothing

    @property
    def score(self) -> float:
        return sum(c.points for c in self.cases)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.cases)

    @property
    def passed(self) -> int:
        return sum(c.status == CaseStatus.PASSED for c in self.cases)

    @property
    def first_problem(self) -> Case | None:
        """The first case that did not pass, or ``None``."""
        return next((c for c in self.cases if c.status != CaseStatus.PASSED), None)


@dataclass(frozen=True)
class GradingResult:
    """Everything a grading run produced, written to every output format."""

    submission: str
    seed: int
    exercises: tuple[ExerciseScore, ...]
    status: RunStatus = RunStatus.OK
    errors: tuple[str, ...] = ()  # why the status is not ok
    device: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    worker: dict = field(default_factory=dict)
    isolation: str = ""  # how the worker was isolated: one of graders.engine.sandbox.LEVELS

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, **asdict(self), "score": self.score, "max_score": self.max_score}


def load(path: str | os.PathLike[str]) -> GradingResult:
    """Reads a project score file (``score.json``).

    Raises:
      ValueError: the file is not a score file of this schema.
    """
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a score file of schema {SCHEMA}")
    exercises = tuple(
        ExerciseScore(e["name"], tuple(Case(**{**c, "status": CaseStatus(c["status"]), "forbidden": tuple(c["forbidden"]),
                                          "leaderboard": tuple(c.get("leaderboard", ()))})
                                       for c in e["cases"]), tuple(e["forbidden"]))
        for e in data["exercises"]
    )
    fields = {k: data[k] for k in ("submission", "seed", "device", "versions", "timings", "worker", "isolation")}
    return GradingResult(exercises=exercises, status=RunStatus(data["status"]), errors=tuple(data["errors"]), **fields)


def write_json(path: Path, data: dict) -> None:
    """Writes ``data`` to ``path`` through a temporary file, so a reader never sees half a file.

    Raises:
      ValueError: ``data`` holds NaN or an infinity, which JSON cannot hold (checked before anything is written).
    """
    text = json.dumps(data, indent=1, allow_nan=False)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
