"""The grader's verbs of ``course``: grade, grade-all, report and autograder.

Registered through the ``course.commands`` entry-point group, so they exist
only where ``graders`` is installed (never in a student's repository).
"""

from __future__ import annotations

import signal
from pathlib import Path

import click
from rich.markup import escape

from course import submission as submissions
from course.cli import console, seed_range

DAY_SECONDS = 86_400  # longer limits are typos, and past the worker's clock arithmetic
seed_option = click.option("--seed", type=seed_range,
                           help="Seed of the inputs (default: random, recorded); the same seed reproduces a grade.")


def sandbox_options(command):
    """``--require-sandbox`` and ``--open-interpreter-path``, given to the command as ``isolation`` and ``open_interpreter_path``."""
    command = click.option("--open-interpreter-path", is_flag=True,
                           help="On the fallback sandbox as root, add o+x to the folders above this Python when the worker's "
                                "user cannot reach it (refused otherwise).")(command)
    return click.option("--require-sandbox", "isolation", flag_value="bubblewrap", default="auto",
                        help="Refuse to grade unless bubblewrap isolates the worker (default: fall back to an unprivileged user).")(command)


def register(main: click.Group) -> None:
    """Adds this package's verbs to the ``course`` command."""
    for command in (grade, grade_all, merge_results, report, autograder):
        main.add_command(command)


def graded(ctx: click.Context, param: click.Parameter, exercises: tuple[str, ...]) -> list[str] | None:
    """Click callback of ``-e/--exercise`` for the grading verbs: catalogued exercises that have a suite."""
    from course.cli import exercise_names
    from graders.engine.grading import check_graded

    names = exercise_names(ctx, param, exercises)
    try:
        check_graded(names or ())
    except KeyError as error:
        raise click.BadParameter(error.args[0], ctx=ctx, param=param) from None
    return names


graded_option = click.option("-e", "--exercise", "exercises", multiple=True, callback=graded, help="Only this exercise (repeatable).")


@click.command()
@click.argument("submission", required=False, type=click.Path(path_type=Path))
@graded_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/grade"), show_default=True,
              help="Folder for results.json (Gradescope), report.json (pytest) and score.json.")
@seed_option
@click.option("--points-line", is_flag=True, help="Also print `Points X/Y` (GitHub Classroom).")
@sandbox_options
def grade(submission: Path | None, exercises: list[str] | None, out: Path, seed: int | None, points_line: bool,
          isolation: str, open_interpreter_path: bool) -> None:
    """Grade SUBMISSION (a folder or a .zip of one; default: exercises/) with the hidden grader suites.

    A .zip is unpacked into a temporary folder with grade-all's checks (no
    entry outside it, no links, bounded size), graded, and removed.

    Exits 0 when grading completed, whatever the score; 1 when the grading
    itself failed (a grader error: the score cannot be trusted).
    """
    from course.tables import summary_table
    from graders import grade as run_grade
    from graders.batch import Rejected, unpacked
    from graders.engine.sandbox import SandboxUnavailable
    from graders.results.scores import RunStatus

    target = submission if submission is not None else submissions.default_submission()
    try:
        with unpacked(target) as folder:
            result = run_grade(folder, exercises=exercises, out=out, seed=seed, isolation=isolation,
                               open_interpreter_path=open_interpreter_path)
    except SandboxUnavailable as error:
        raise click.ClickException(str(error)) from None
    except (FileNotFoundError, NotADirectoryError, ValueError, Rejected) as error:
        raise click.BadParameter(str(error), param_hint="SUBMISSION") from None
    rows = []
    for exercise in result.exercises:
        problem = exercise.first_problem
        note = (f"forbidden: {', '.join(exercise.forbidden)}" if exercise.forbidden
                else f"{problem.name}: {problem.message}" if problem else "")
        style = "green" if exercise.score == exercise.max_score else "red"
        cells = (exercise.name, f"[{style}]{exercise.score:g}/{exercise.max_score:g}[/{style}]", f"{exercise.passed}/{len(exercise.cases)}")
        rows.append((cells, note))
    console.print(summary_table(f"Grade of {target} (seed {result.seed})", ("exercise", "points", "passed"), "first problem",
                                rows, width=console.width))
    for exercise in result.exercises:
        if (problem := exercise.first_problem) is not None:
            console.print(escape(f"{exercise.name}: {problem.name}\n    {problem.message}"), soft_wrap=True)
    console.print(f"Score {result.score:g}/{result.max_score:g}; files in {escape(str(out))}/ (results.json, report.json, score.json)")
    if points_line:
        click.echo(f"Points {result.score:g}/{result.max_score:g}")
    if result.status != RunStatus.OK:
        console.print("[red]grading failed[/red] (a grader error, not the submission's fault):", escape("\n".join(result.errors)[-4000:]))
        raise SystemExit(1)


def shard_option(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """Click callback of ``--shard``: ``I/N`` as ``(I, N)``."""
    from graders.batch import parse_shard

    try:
        return None if value is None else parse_shard(value)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


def seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Click callback of the time limits: a number of seconds, more than 0 and at most a day."""
    if value is not None and not 0 < value <= DAY_SECONDS:  # nan fails too
        raise click.BadParameter(f"expected seconds, more than 0 and at most {DAY_SECONDS}, got {value}", ctx=ctx, param=param)
    return value


@click.command("grade-all")
@click.argument("submissions_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="The results folder: one folder per student.")
@click.option("--jobs", type=click.IntRange(min=1), help="Submissions graded at once (default: one per core).")
@click.option("--force", is_flag=True, help="Regrade every submission, even unchanged ones or another grader version's results.")
@click.option("--seed", type=seed_range, help="One seed for the whole class (default: the results folder's, or random).")
@graded_option
@click.option("--call-seconds", type=float, callback=seconds, help="Time limit of one call of a student's function.")
@click.option("--submission-seconds", type=float, callback=seconds, help="Time limit of one submission's calls together.")
@sandbox_options
@click.option("--scheduler", metavar="ADDRESS", help="Grade on the workers of this Dask scheduler (tcp://host:8786); they must "
              "see SUBMISSIONS_DIR at the same path. Needs pip install -e \".[cluster]\".")
@click.option("--shard", metavar="I/N", callback=shard_option,
              help="Grade only shard I of N (from 0; each student's shard is a hash of the id); needs --seed. "
                   "Join the N results folders with course merge-results.")
def grade_all(submissions_dir, out, jobs, force, seed, exercises, call_seconds, submission_seconds, isolation,
              open_interpreter_path, scheduler, shard) -> None:
    """Grade every student's submission (a folder or .zip each, named by the student id) of SUBMISSIONS_DIR.

    Exits 1 when a submission was rejected or hit a grader error (each is a
    zero with its reason in the results), 0 otherwise.
    """
    from course.progress import progress_bar
    from graders import Limits
    from graders.batch import BatchError, grade_all as run_grade_all
    from graders.engine.sandbox import SandboxUnavailable
    from graders.results.scores import SubmissionStatus

    limits = Limits(**{k: v for k, v in {"call_seconds": call_seconds, "submission_seconds": submission_seconds}.items() if v is not None})
    fields = {"rate": "{value}/min", "failures": "failures {value}"}
    with progress_bar(console, label="grading", fields=fields) as bar:
        failures = 0

        def on_done(outcome):
            nonlocal failures
            failures += outcome.status != SubmissionStatus.GRADED
            done = bar.completed + 1
            line = (f"{done}/{bar.total} {outcome.student}: {outcome.status} {outcome.score:g}/{outcome.max_score:g}"
                    + (" (unchanged, skipped)" if outcome.skipped else ""))
            bar.update(done, line=line, rate=f"{60 * done / max(bar.elapsed, 1e-9):.1f}", failures=str(failures))

        # A scheduler's or CI's stop (SIGTERM) stops the run as Ctrl-C does: no student's code runs on unwatched.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            result = run_grade_all(submissions_dir, out, jobs=jobs, force=force, seed=seed, exercises=exercises,
                                   limits=limits, isolation=isolation, open_interpreter_path=open_interpreter_path,
                                   scheduler=scheduler, shard=shard, on_start=bar.start, on_done=on_done)
        except BatchError as error:
            raise click.UsageError(str(error)) from None
        except SandboxUnavailable as error:
            raise click.ClickException(str(error)) from None
    _print_batch(result, skipped="unchanged (skipped)")
    if result.failures:
        raise SystemExit(1)


def _print_batch(result, *, skipped: str | None) -> None:
    """The closing lines of a class run: the counts of each status (``skipped`` names the unchanged ones, unless
    ``None``), then every submission the instructor must look at."""
    counts: dict[str, int] = {}
    for outcome in result.outcomes:
        label = skipped if skipped and outcome.skipped else outcome.status
        counts[label] = counts.get(label, 0) + 1
    console.print(f"{len(result.outcomes)} submissions in {result.seconds:.1f} s (seed {result.seed}, grader {result.grader_version}): "
                  + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f". Results in {escape(str(result.results_dir))}/")
    for outcome in result.failures:
        console.print(f"[red]{escape(outcome.student)}[/red] {outcome.status}: {escape(outcome.reason[:300])}", soft_wrap=True)


@click.command("merge-results")
@click.argument("shard_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="The results folder to write (new or empty).")
def merge_results(shard_dirs: tuple[Path, ...], out: Path) -> None:
    """Join the results folders of course grade-all --shard 0/N .. N-1/N into the folder one unsharded run writes.

    Exits 0 when every shard was there and agreed (the submissions that need a
    look are listed), 2 otherwise.
    """
    from graders.batch import BatchError, merge_results as run_merge

    try:
        result = run_merge(shard_dirs, out)
    except BatchError as error:
        raise click.UsageError(str(error)) from None
    _print_batch(result, skipped=None)


@click.command()
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="The report folder.")
@click.option("--published", is_flag=True, help="Show after_due_date / after_published cases in full in the feedback.")
def report(results_dir: Path, out: Path, published: bool) -> None:
    """Write grades.csv, summary.json, feedback/<student>.md and report.html for a grade-all results folder."""
    from graders.results.reports import ReportError, write_report

    try:
        summary = write_report(results_dir, out, published=published)
    except ReportError as error:  # its message names the argument
        raise click.UsageError(str(error)) from None
    console.print(f"{len(summary.students)} students, average {summary.average_total:.1f}/{summary.total_max:g}; "
                  f"wrote {escape(str(out))}/ (grades.csv, summary.json, feedback/, report.html)")


@click.command()
@click.option("--gradescope", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The bundle to write (OUT.zip).")
@click.option("--seed", type=seed_range, help="One seed for every student (default: drawn now, recorded in the bundle).")
@graded_option
def autograder(out: Path, seed: int | None, exercises: list[str] | None) -> None:
    """Write a Gradescope autograder bundle: setup.sh, run_autograder, the grader, reference and pinned requirements."""
    from graders.autograder import build_bundle

    try:
        path = build_bundle(out, seed=seed, exercises=exercises)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--gradescope") from None
    console.print(f"Wrote the Gradescope autograder bundle {escape(str(path))} ({path.stat().st_size / 2**20:.1f} MiB); "
                  "upload it as the assignment's autograder (Ubuntu base image).")
