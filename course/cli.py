"""The ``course`` command: one verb per job, each a thin layer over a Python function."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from course import catalog, submission

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
