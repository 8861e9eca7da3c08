"""The ``course`` command: one verb per job, each a thin layer over a Python function."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from course import catalog, submission
from course import submission as submission_module

console = Console()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Introduction to Transformers with JAX: exercises, checks and course tools."""


@main.command()
@click.argument("target", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-e", "--exercise", "names", multiple=True, help="Only this exercise (repeatable).")
def check(target: Path | None, names: tuple[str, ...]) -> None:
    """Run the visible tests of every exercise against TARGET (default: exercises/)."""
    from course.check import run_visible_tests

    for name in names:
        _known_exercise(name)
    try:
        results = run_visible_tests(target, list(names) or None)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise click.BadParameter(str(error), param_hint="TARGET") from None
    shown = target if target is not None else submission.default_submission()
    table = Table(title=escape(f"Visible tests of {shown}"))
    for column in ("exercise", "level", "passed", "first failure"):
        table.add_column(column, no_wrap=True)
    # The failure is cut to what fits, so each exercise keeps one line.
    room = max(20, console.width - max(len(r.exercise.name) for r in results) - 31)
    for result in results:
        style = "green" if result.ok else "red"
        table.add_row(
            result.exercise.name,
            result.exercise.level,
            f"[{style}]{result.passed}/{result.total}[/{style}]",
            escape(_cut(result.first_failure.message, room)) if result.first_failure else "",
        )
    console.print(table)
    for result in results:
        if result.first_failure:
            failure = result.first_failure
            console.print(escape(f"{failure.nodeid}\n    {failure.message}"), soft_wrap=True)
    passed, total = sum(r.passed for r in results), sum(r.total for r in results)
    console.print(f"{passed}/{total} visible tests pass. Details: pytest exercises/<name>")
    if not all(r.ok for r in results):
        raise SystemExit(1)


@main.command()
@click.argument("submission", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-e", "--exercise", "names", multiple=True, help="Only this exercise (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/grade"), show_default=True,
              help="Folder for results.json (Gradescope), report.json (pytest) and score.json.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Seed of the inputs (default: random); reproduces a grade.")
@click.option("--points-line", is_flag=True, help="Also print `Points X/Y` (GitHub Classroom).")
def grade(submission: Path | None, names: tuple[str, ...], out: Path, seed: int | None, points_line: bool) -> None:
    """Grade SUBMISSION (default: exercises/) with the hidden grader suites.

    Exits 0 when grading completed, whatever the score; 1 when the grading
    itself failed (a grader error: the score cannot be trusted).
    """
    from graders import grade as run_grade, graded_exercises

    for name in names:
        _known_exercise(name)
        if name not in graded_exercises():
            raise click.BadParameter(f"{name!r} has no grader suite", param_hint="--exercise")
    target = submission if submission is not None else submission_module.default_submission()
    try:
        result = run_grade(target, exercises=list(names) or None, out=out, seed=seed)
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        raise click.BadParameter(str(error), param_hint="SUBMISSION") from None
    table = Table(title=escape(f"Grade of {target} (seed {result.seed})"))
    for column in ("exercise", "points", "passed", "first problem"):
        table.add_column(column, no_wrap=True)
    room = max(20, console.width - max([len(e.name) for e in result.exercises] or [8]) - 31)
    for exercise in result.exercises:
        problem = next((c for c in exercise.cases if c.status != "passed"), None)
        note = (f"forbidden: {', '.join(exercise.forbidden)}" if exercise.forbidden
                else f"{problem.name}: {problem.message}" if problem else "")
        style = "green" if exercise.score == exercise.max_score else "red"
        table.add_row(exercise.name, f"[{style}]{exercise.score:g}/{exercise.max_score:g}[/{style}]",
                      f"{exercise.passed}/{len(exercise.cases)}", escape(_cut(note, room)))
    console.print(table)
    for exercise in result.exercises:
        problem = next((c for c in exercise.cases if c.status != "passed"), None)
        if problem is not None:
            console.print(escape(f"{exercise.name}: {problem.name}\n    {problem.message}"), soft_wrap=True)
    console.print(f"Score {result.score:g}/{result.max_score:g}; files in {escape(str(out))}/ (results.json, report.json, score.json)")
    if points_line:
        click.echo(f"Points {result.score:g}/{result.max_score:g}")
    if result.status != "ok":
        console.print("[red]grading failed[/red] (a grader error, not the submission's fault):", escape("\n".join(result.errors)[-4000:]))
        raise SystemExit(1)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _known_exercise(name: str) -> None:
    try:
        catalog.get(name)
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="--exercise") from None


def _sync_paths(reference: Path | None) -> tuple[Path, Path]:
    root = submission.repo_root()
    return (reference or root / "reference"), root / "exercises"


@main.command()
@click.option("--check", "only_check", is_flag=True, help="Fail if a committed stub differs from the generated one; write nothing.")
@click.option("--reference", type=click.Path(file_okay=False, exists=True, path_type=Path), help="The reference submission (default: reference/).")
def stubs(only_check: bool, reference: Path | None) -> None:
    """Generate the student stubs in exercises/ from the reference solutions."""
    from course.stubs import MarkerError, sync

    source, target = _sync_paths(reference)
    try:
        updates = sync(source, target, write=not only_check)
    except (MarkerError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    _report((u.path, "differs from the generated stub" if u.changed else None) for u in updates)
    if only_check and any(u.changed for u in updates):
        raise click.ClickException("stubs are stale: run `course stubs`")


@main.command()
@click.option("--check", "only_check", is_flag=True, help="Fail if a committed fixture file is stale; write nothing.")
@click.option("--reference", type=click.Path(file_okay=False, exists=True, path_type=Path), help="The reference submission (default: reference/).")
def fixtures(only_check: bool, reference: Path | None) -> None:
    """Compute the visible tests' fixtures (exercises/*/fixtures.npz) from the reference."""
    from course.fixtures import sync

    source, target = _sync_paths(reference)
    updates = sync(source, target, write=not only_check)
    _report((u.path, u.stale) for u in updates)
    if only_check and any(u.stale for u in updates):
        raise click.ClickException("fixtures are stale: run `course fixtures`")


def _report(rows) -> None:
    root = submission.repo_root()
    for path, problem in rows:
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        console.print(f"  {shown}: " + (f"[yellow]{problem}[/yellow]" if problem else "[green]up to date[/green]"))
