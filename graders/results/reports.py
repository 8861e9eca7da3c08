"""``course report``: a class's grades from a results folder of ``course grade-all``.

Writers of the score model (:mod:`graders.results.scores`), beside
:mod:`graders.results.gradescope`. The class's numbers (a :class:`ClassSummary`)
become ``grades.csv`` (otter-grader's layout: a first row with the maximum
points), ``summary.json`` (the same numbers for scripts) and, through
:mod:`graders.results.html_report`, ``report.html``; each student's record
becomes ``feedback/<student>.md`` (only what that student may see).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from course.folders import replacing
from graders.results import layout
from graders.results.layout import BATCH_FILE
from graders.results.scores import CaseStatus, GradingResult, SubmissionStatus, load, write_json

SUMMARY_SCHEMA = "course-class-summary/1"
SUMMARY_FILE = "summary.json"
# Gradescope's visibility settings: what a student sees of a case before the results are published.
FULL_VISIBILITY = {"visible"}
HARDEST_SHOWN = 10
RUN_KEYS = ("grader_version", "seed", "exercises")  # what every student of a results folder shares with its batch.json


class ReportError(ValueError):
    """The results folder cannot be reported on."""


@dataclass(frozen=True)
class StudentRecord:
    """One student's line of the class run: its status and, unless rejected, its grading result."""

    student: str
    status: SubmissionStatus
    reason: str
    result: GradingResult | None


@dataclass(frozen=True)
class StudentTotal:
    """One student's points: per exercise (0 where not graded), in all, and as a percent of the maximum."""

    student: str
    points: dict[str, float]
    total: float
    percent: float  # rounded to 2 decimals
    status: SubmissionStatus
    reason: str


@dataclass(frozen=True)
class HardCase:
    """A case that not every graded student passed, with the hint most often shown on it."""

    exercise: str
    case: str
    pass_rate: float  # in [0, 1)
    graded: int  # students graded on it
    top_hint: str | None
    top_hint_count: int


@dataclass(frozen=True)
class ClassSummary:
    """The class's numbers: maximum points, each student's points, averages and the hardest cases.

    Written as ``summary.json`` (:meth:`to_json`), ``grades.csv`` and ``report.html``.
    """

    seed: int
    grader_version: str
    exercises: tuple[str, ...]  # in the class run's order
    max_points: dict[str, float]  # per exercise
    total_max: float
    students: tuple[StudentTotal, ...]  # sorted by student id
    exercise_averages: dict[str, float]  # over every student, rejected ones included (as zeros)
    average_total: float
    status_counts: dict[SubmissionStatus, int]
    hardest_cases: tuple[HardCase, ...]  # lowest pass rate first

    def to_json(self) -> dict:
        return {"schema": SUMMARY_SCHEMA, **asdict(self)}


def load_results(results_dir: str | os.PathLike[str]) -> tuple[dict, list[StudentRecord]]:
    """Reads a results folder: its ``batch.json`` and every student's records, sorted by student id.

    Raises:
      ReportError: not a results folder of this grader's schema, no student in it, a student's folder without its
        record (a grading cut short), or a student graded with another seed, exercises or grader version than the
        folder's ``batch.json`` (left by an earlier run: their grades are not comparable).
    """
    root = Path(results_dir)
    batch_file = root / BATCH_FILE
    if not batch_file.is_file():
        raise ReportError(f"RESULTS_DIR: {root} holds no {BATCH_FILE}; expected the --out folder of course grade-all")
    try:
        meta = layout.read_batch(root)
    except ValueError as error:
        raise ReportError(f"RESULTS_DIR: {error}") from None
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        students = [(folder, layout.read_student(folder)) for folder in folders]
    except ValueError as error:
        raise ReportError(f"RESULTS_DIR: {error}; a grading cut short? Run course grade-all on the folder again") from None
    records, stale = [], []
    for folder, record in students:
        status = SubmissionStatus(record["status"])
        differs = [f"{key} {record[key]!r}" for key in RUN_KEYS if key in record and record[key] != meta.get(key)]
        if differs:
            stale.append(f"{folder.name} ({', '.join(differs)})")
        score_file = folder / "score.json"
        result = load(score_file) if status != SubmissionStatus.REJECTED and score_file.is_file() else None
        records.append(StudentRecord(record.get("student", folder.name), status, record.get("reason", ""), result))
    if stale:
        raise ReportError(f"RESULTS_DIR: graded in another run than {BATCH_FILE}'s (seed "
                          f"{meta.get('seed')}, exercises {meta.get('exercises')}): {'; '.join(stale[:5])}"
                          f"{' ...' if len(stale) > 5 else ''}; grade them again with course grade-all, or remove their folders")
    if not records:
        raise ReportError(f"RESULTS_DIR: {root} holds no graded student")
    return meta, records


def class_summary(meta: dict, records: list[StudentRecord]) -> ClassSummary:
    """The class's numbers from a results folder's ``batch.json`` (``meta``) and its students' records."""
    graded = [r.result for r in records if r.result is not None]
    max_points = {name: 0.0 for name in meta["exercises"]}
    for result in graded:  # every graded run has the same cases (one seed, one grader version)
        for exercise in result.exercises:
            max_points[exercise.name] = max(max_points[exercise.name], exercise.max_score)
    total_max = sum(max_points.values())
    students = []
    for record in records:
        points = {name: 0.0 for name in max_points}
        if record.result is not None:
            points |= {e.name: e.score for e in record.result.exercises}
        total = sum(points.values())
        students.append(StudentTotal(record.student, points, total, round(100 * total / total_max, 2) if total_max else 0.0,
                                     record.status, record.reason))
    count = len(students)
    return ClassSummary(
        seed=meta["seed"], grader_version=meta["grader_version"], exercises=tuple(max_points), max_points=max_points,
        total_max=total_max, students=tuple(students),
        exercise_averages={name: sum(s.points[name] for s in students) / count for name in max_points},
        average_total=sum(s.total for s in students) / count,
        status_counts=dict(Counter(s.status for s in students)),
        hardest_cases=hardest_cases(graded),
    )


def hardest_cases(results: list[GradingResult], shown: int = HARDEST_SHOWN) -> tuple[HardCase, ...]:
    """The cases with the lowest pass rate over ``results`` (at most ``shown``), each with the hint most often shown."""
    tally: dict[tuple[str, str], dict] = {}
    for result in results:
        for exercise in result.exercises:
            for case in exercise.cases:
                entry = tally.setdefault((case.exercise, case.name), {"passed": 0, "total": 0, "hints": Counter()})
                entry["total"] += 1
                entry["passed"] += case.status == CaseStatus.PASSED
                if case.hint:
                    entry["hints"][case.hint] += 1
    rows = []
    for (exercise, name), e in tally.items():
        hint, count = e["hints"].most_common(1)[0] if e["hints"] else (None, 0)
        rows.append(HardCase(exercise, name, e["passed"] / e["total"], e["total"], hint, count))
    rows.sort(key=lambda r: (r.pass_rate, r.exercise, r.case))
    return tuple(r for r in rows if r.pass_rate < 1)[:shown]


def write_csv(summary: ClassSummary, path: Path) -> None:
    """``grades.csv``: a header, a row of maximum points, then one row per student."""
    names = summary.exercises
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", *names, "total", "percent", "status", "reason"])
        writer.writerow(["max points", *(_number(summary.max_points[n]) for n in names), _number(summary.total_max), 100, "", ""])
        for s in summary.students:
            writer.writerow([s.student, *(_number(s.points[n]) for n in names), _number(s.total), s.percent, s.status, s.reason])


def feedback(record: StudentRecord, *, published: bool = False) -> str:
    """A student's feedback in Markdown: visible cases in full, other cases as pass/fail and points.

    ``after_due_date`` and ``after_published`` cases are shown in full once
    ``published``; ``hidden`` ones never are. A grader error's detail (for the
    instructor) never appears.
    """
    lines = [f"# Feedback for {record.student}", ""]
    if record.result is None:
        lines += ["Your submission could not be graded and scores 0.", "", f"Reason: {record.reason}", ""]
        return "\n".join(lines)
    result = record.result
    lines += [f"Score: **{result.score:g} / {result.max_score:g}**", ""]
    if record.status == SubmissionStatus.GRADER_ERROR:
        lines += ["The grader failed on your submission; this is not your fault, and the course staff has been told.", ""]
    shown = FULL_VISIBILITY | ({"after_due_date", "after_published"} if published else set())
    for exercise in result.exercises:
        lines += [f"## {exercise.name}: {exercise.score:g} / {exercise.max_score:g}", ""]
        if exercise.forbidden:
            lines += [f"Forbidden routines used (the exercise earns nothing): {', '.join(exercise.forbidden)}", ""]
        for case in exercise.cases:
            mark = CaseStatus.PASSED if case.status == CaseStatus.PASSED else CaseStatus.FAILED
            if case.visibility in shown:
                lines.append(f"- `{case.name}`: {mark}, {case.points:g}/{case.max_points:g}")
                if case.message:
                    lines.append("  " + case.message.replace("\n", "\n  "))
                if case.hint and case.hint not in case.message:
                    lines.append(f"  Hint: {case.hint}")
            else:
                lines.append(f"- hidden case: {mark}, {case.points:g}/{case.max_points:g}")
        lines.append("")
    return "\n".join(lines)


def write_report(results_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, published: bool = False) -> ClassSummary:
    """Writes ``grades.csv``, ``summary.json``, ``feedback/<student>.md`` and ``report.html`` into ``out``.

    Returns:
      The class summary, as written to ``summary.json``.
    """
    from graders.results import html_report  # matplotlib is imported only to write the page

    meta, records = load_results(results_dir)
    summary = class_summary(meta, records)
    out_dir = Path(out)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / SUMMARY_FILE).is_file():
        raise ReportError(f"--out: {out_dir} is not empty and holds no {SUMMARY_FILE}: not a report folder to replace")
    with replacing(out_dir) as new:  # a report of this run only: no feedback of a student since removed
        (new / "feedback").mkdir()
        write_csv(summary, new / "grades.csv")
        write_json(new / SUMMARY_FILE, summary.to_json())
        for record in records:
            (new / "feedback" / f"{record.student}.md").write_text(feedback(record, published=published))
        (new / "report.html").write_text(html_report.render(summary))
    return summary


def _number(value: float) -> str:
    return f"{value:g}"
