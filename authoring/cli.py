"""The instructor's verbs of ``course``: stubs, fixtures, build-notebooks, site, release and lock-grader.

Registered through the ``course.commands`` entry-point group, so they exist
only where ``authoring`` is installed (never in a student's repository).
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from course import submission
from course.cli import console, notebook_target, report_files, sections_of

reference_option = click.option("--reference", type=click.Path(file_okay=False, exists=True, path_type=Path),
                                help="The reference submission (default: reference/).")


def register(main: click.Group) -> None:
    """Adds this package's verbs to the ``course`` command."""
    for command in (stubs, fixtures, build_demo, build_notebooks, site, release, lock_grader):
        main.add_command(command)


def _sync_paths(reference: Path | None) -> tuple[Path, Path]:
    root = submission.repo_root()
    return (reference or root / "reference"), root / "exercises"


@click.command()
@click.option("--check", "only_check", is_flag=True, help="Fail if a committed stub differs from the generated one; write nothing.")
@reference_option
def stubs(only_check: bool, reference: Path | None) -> None:
    """Generate the student stubs in exercises/ from the reference solutions."""
    from authoring.stubs import MarkerError, sync

    source, target = _sync_paths(reference)
    try:
        updates = sync(source, target, write=not only_check)
    except (MarkerError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    report_files((u.path, "differs from the generated stub" if u.changed else None) for u in updates)
    if only_check and any(u.changed for u in updates):
        raise click.ClickException("stubs are stale: run `course stubs`")


@click.command()
@click.option("--check", "only_check", is_flag=True, help="Fail if a committed fixture file is stale; write nothing.")
@reference_option
def fixtures(only_check: bool, reference: Path | None) -> None:
    """Compute the visible tests' fixtures (exercises/*/fixtures.npz) from the reference."""
    from authoring.fixtures import sync

    source, target = _sync_paths(reference)
    updates = sync(source, target, write=not only_check)
    report_files((u.path, u.stale) for u in updates)
    if only_check and any(u.stale for u in updates):
        raise click.ClickException("fixtures are stale: run `course fixtures`")


@click.command("build-demo")
@click.option("--check", "only_check", is_flag=True, help="Fail if course/demo/model.jaxexport differs from a fresh build; write nothing.")
def build_demo(only_check: bool) -> None:
    """Export the demo model (reference/ and course/demo/model.npz) as compiled programs: course/demo/model.jaxexport."""
    from authoring.demo import build
    from course.compiled_demo import ARTIFACT

    stale = build(write=not only_check)
    report_files([(ARTIFACT, ("differs from a fresh build" if only_check else "rebuilt") if stale else None)])
    if only_check and stale:
        raise click.ClickException("the compiled demo is stale: run `course build-demo`")


@click.command("build-notebooks")
@click.option("--check", "only_check", is_flag=True, help="Fail if a .ipynb file differs from what its source builds; write nothing.")
@click.option("-n", "--section", "sections", multiple=True, type=int, callback=sections_of, help="Only this section (repeatable).")
def build_notebooks(only_check: bool, sections) -> None:
    """Write the .ipynb files from their sources (course/notebooks/src/)."""
    from authoring.notebooks.build import SourceError, sync

    try:
        updates = sync(write=not only_check, sections=sections)
    except (SourceError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    report_files((u.path, ("differs from what its source builds" if only_check else "rebuilt") if u.changed else None) for u in updates)
    if only_check and any(u.changed for u in updates):
        raise click.ClickException("notebooks are stale: run `course build-notebooks`")


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--with", "target", metavar="reference|PATH", help="The submission the notebooks run (default: exercises/).")
@click.option("--quick", is_flag=True, help="The small setting of long cells (COURSE_QUICK=1).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Kernels at once (default: as `course notebooks --execute`).")
@click.option("-n", "--section", "sections", multiple=True, type=int, callback=sections_of,
              help="Only this section (repeatable): the index and the links between pages take in only these.")
def site(out_dir: Path, target: str | None, quick: bool, jobs: int | None, sections) -> None:
    """Execute the notebooks and export the course to OUT_DIR as a static HTML site that reads offline."""
    from authoring.notebooks.site import build_site
    from course.cli import shown
    from course.notebook_run import print_runs

    runs, pages = build_site(out_dir, sections=sections, target=notebook_target(target), quick=quick,
                             **({"jobs": jobs} if jobs else {}))
    print_runs(runs, console)
    console.print(f"Wrote {len(pages)} pages; open {shown(pages[0])}")
    if not all(run.ok for run in runs):
        raise SystemExit(1)


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the contents of a non-empty OUT_DIR (its .git is kept).")
@click.option("--allow-edited-stubs", is_flag=True,
              help="Release exercises/ as it is, even where a stub differs from the one `course stubs` generates.")
def release(out_dir: Path, force: bool, allow_edited_stubs: bool) -> None:
    """Write the student repository to OUT_DIR: course/, exercises/, README, pyproject, CI; nothing hidden.

    Refuses while a stub of exercises/ differs from the one generated from
    reference/, naming each; the leak scan runs either way.
    """
    from authoring.release import ReleaseError
    from authoring.release import release as write_release

    try:
        written = write_release(out_dir, force=force, allow_edited_stubs=allow_edited_stubs)
    except ReleaseError as error:
        raise click.ClickException(str(error)) from None
    files = sum(1 for p in written.rglob("*") if p.is_file())
    console.print(f"Wrote the student repository to {written} ({files} files; no reference or grader text found in it).")


@click.command("lock-grader")
@click.option("--check", "only_check", is_flag=True, help="Fail if the lock files no longer match pyproject.toml; no network.")
@click.option("--python", "python", metavar="X.Y", help="The bundle's Python (default: this one's version).")
def lock_grader(only_check: bool, python: str | None) -> None:
    """Write the Gradescope bundle's lock files (graders/templates/*.lock) with uv: exact versions and hashes."""
    from authoring import lock

    root = submission.repo_root()
    try:
        problems = lock.stale(root) if only_check else []
        paths = [] if only_check else lock.write_locks(root, python=python)
    except (RuntimeError, ValueError) as error:  # no uv, a failed resolution, or a grading dependency that is not one
        raise click.ClickException(str(error)) from None
    if problems:
        raise click.ClickException("\n".join(problems) + "\nRun `course lock-grader`.")
    for path in paths:
        console.print(f"Wrote {escape(str(path))}")
