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
from pathlib import Path

SCHEMA = "course-score/1"
STATUSES = ("passed", "failed", "grader_error")


@dataclass(frozen=True)
class Case:
    """One graded case."""

    exercise: str
    name: str  # the test and its parameters, e.g. "test_causal_mask[one]"
    points: float  # earned
    max_points: float
    status: str  # passed, failed (the submission's fault) or grader_error
    message: str = ""  # what the student reads; never reference values
    hint: str | None = None  # the known mistake the outputs match
    visibility: str = "visible"
    seconds: float = 0.0
    forbidden: tuple[str, ...] = ()  # forbidden routines seen while grading the exercise
    detail: str = ""  # for the instructor only: a grader error's traceback


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
        return sum(c.status == "passed" for c in self.cases)

    @property
    def first_problem(self) -> Case | None:
        """The first case that did not pass, or ``None``."""
        return next((c for c in self.cases if c.status != "passed"), None)


@dataclass(frozen=True)
class GradingResult:
    """Everything a grading run produced, written to every output format."""

    submission: str
    seed: int
    exercises: tuple[ExerciseScore, ...]
    status: str = "ok"  # ok, or grader_error when the grade cannot be trusted
    errors: tuple[str, ...] = ()  # why the status is not ok
    device: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    worker: dict = field(default_factory=dict)

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
        ExerciseScore(e["name"], tuple(Case(**{**c, "forbidden": tuple(c["forbidden"])}) for c in e["cases"]), tuple(e["forbidden"]))
        for e in data["exercises"]
    )
    fields = {k: data[k] for k in ("submission", "seed", "status", "device", "versions", "timings", "worker")}
    return GradingResult(exercises=exercises, errors=tuple(data["errors"]), **fields)


def write_json(path: Path, data: dict) -> None:
    """Writes ``data`` to ``path`` through a temporary file, so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1))
    os.replace(temporary, path)
