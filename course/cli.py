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


def _sections(numbers: tuple[int, ...]):
    from course import syllabus

    try:
        return tuple(syllabus.get(n) for n in numbers) or syllabus.SECTIONS
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="--section") from None


def _target(target: str | None) -> Path:
    from course.notebook_run import resolve_target

    try:
        return resolve_target(target)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise click.BadParameter(str(error), param_hint="--with") from None


@main.command()
@click.option("--execute", is_flag=True, help="Run the notebooks top to bottom, each in a Jupyter kernel.")
@click.option("--with", "target", metavar="reference|PATH", help="The submission they run (default: exercises/).")
@click.option("--quick", is_flag=True, help="The small setting of long cells (COURSE_QUICK=1).")
@click.option("-n", "--section", "numbers", multiple=True, type=int, help="Only this section (repeatable).")
@click.option("-j", "--jobs", default=2, show_default=True, type=click.IntRange(min=1), help="Kernels at once.")
@click.option("--build", is_flag=True, help="Write the .ipynb files from their sources (course/notebooks/src/).")
@click.option("--check", "only_check", is_flag=True, help="Fail if a .ipynb file differs from what its source builds.")
def notebooks(execute: bool, target: str | None, quick: bool, numbers: tuple[int, ...], jobs: int, build: bool, only_check: bool) -> None:
    """List the course's notebooks, or build, check and execute them."""
    from course.notebook_run import execute_notebooks, print_runs
    from course.notebook_source import SourceError, sync

    sections = _sections(numbers)
    if build or only_check:
        try:
            updates = sync(write=build, sections=sections)
        except (SourceError, FileNotFoundError) as error:
            raise click.ClickException(str(error)) from None
        _report((u.path, ("rebuilt" if build else "differs from what its source builds") if u.changed else None) for u in updates)
        if only_check and not build and any(u.changed for u in updates):
            raise click.ClickException("notebooks are stale: run `course notebooks --build`")
    if execute:
        runs = execute_notebooks(sections, target=_target(target), quick=quick, jobs=jobs)
        print_runs(runs, console)
        if not all(run.ok for run in runs):
            raise SystemExit(1)
    if not (build or only_check or execute):
        for section in sections:
            console.print(f"{section.number}. {section.title} ({section.level}): {_shown(section.notebook)}")


def _shown(path: Path) -> str:
    root = submission.repo_root()
    return str(path.relative_to(root) if path.is_relative_to(root) else path)


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--with", "target", metavar="reference|PATH", help="The submission the notebooks run (default: exercises/).")
@click.option("--quick", is_flag=True, help="The small setting of long cells (COURSE_QUICK=1).")
@click.option("-j", "--jobs", default=2, show_default=True, type=click.IntRange(min=1), help="Kernels at once.")
def site(out_dir: Path, target: str | None, quick: bool, jobs: int) -> None:
    """Execute every notebook and export the course to OUT_DIR as a static HTML site."""
    from course.notebook_run import print_runs
    from course.site import build_site

    runs, pages = build_site(out_dir, target=_target(target), quick=quick, jobs=jobs)
    print_runs(runs, console)
    console.print(f"Wrote {len(pages)} pages; open {_shown(pages[0])}")
    if not all(run.ok for run in runs):
        raise SystemExit(1)
