"""The ``course`` command: one verb per job, each a thin layer over a Python function."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from course import catalog, submission
from course import submission as submission_module
from course.host_memory import keep_freed_memory

console = Console()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Introduction to Transformers with JAX: exercises, checks and course tools."""
    keep_freed_memory()  # before any verb starts JAX: XLA on CPU then reuses its scratch memory


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
    _need_graders()
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


def _need_graders() -> None:
    """Stops with a clear message where the hidden grader is absent (a student repository)."""
    import importlib.util

    if importlib.util.find_spec("graders") is None:
        raise click.ClickException("this command needs the instructor's graders/ package, which the student repository does not include")


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


@main.command()
@click.option("--config", "run", help="A named run: tiny, small or demo. Default: tiny for a synthetic --corpus, small otherwise.")
@click.option("--corpus", help="stdlib, a UTF-8 text file, or a synthetic task (reverse, sort). Default: the run's.")
@click.option("--steps", type=int, help="Total optimizer steps. Default: the run's.")
@click.option("--batch-size", type=int, help="Sequences per step, split over the devices. Default: the run's.")
@click.option("--learning-rate", type=float, help="Peak AdamW learning rate. Default: the run's.")
@click.option("--seed", type=int, help="Seed of the weights and the data order. Default: the run's.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/latest"), show_default=True, help="The run directory.")
@click.option("--resume", is_flag=True, help="Continue the checkpoint in --out, bit for bit.")
@click.option("--submission", "target", type=click.Path(file_okay=False, path_type=Path), help="Train with this submission's code (default: exercises/, or $COURSE_SUBMISSION).")
@click.option("--devices", type=int, help="On a CPU: split it into this many virtual devices (data parallel).")
def train(run, corpus, steps, batch_size, learning_rate, seed, out_dir, resume, target, devices) -> None:
    """Train the course's TransformerLM from scratch with your train_step."""
    import dataclasses

    if devices is not None:
        from course.train import set_host_device_count

        try:
            set_host_device_count(devices)
        except (ValueError, RuntimeError) as error:
            raise click.BadParameter(str(error), param_hint="--devices") from None
    from course.checkpoint import CheckpointError
    from course.train import RUNS, SYNTHETIC
    from course.train import train as run_training

    if run is None:
        run = "tiny" if corpus in SYNTHETIC else "small"
    if run not in RUNS:
        raise click.BadParameter(f"expected one of {sorted(RUNS)}, got {run!r}", param_hint="--config")
    if target is not None:
        _activate(target)
    overrides = {k: v for k, v in {"corpus": corpus, "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed}.items() if v is not None}
    try:
        config = dataclasses.replace(RUNS[run], **overrides)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--" + str(error).split(":")[0].replace("_", "-")) from None
    from course.model import CONFIGS

    console.print(f"[bold]run[/bold] {config}")
    console.print(f"[bold]model[/bold] {CONFIGS[config.model]}")
    console.print(f"[bold]submission[/bold] {submission.active_submission()}")
    try:
        result = _train_with_progress(run_training, config, out_dir, resume)
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    console.print(
        f"step {result.step}: train loss {result.train_loss:.4f}, validation loss {result.val_loss:.4f}"
        + (f", accuracy {result.val_accuracy:.3f}" if result.val_accuracy is not None else "")
        + f"; {result.seconds:.1f} s, {result.tokens_per_second:,.0f} tokens/s. Wrote {out_dir}/"
    )


@main.command()
@click.option("--checkpoint", "directory", type=click.Path(path_type=Path), help="A run directory of `course train` (default: the shipped demo model, course/demo).")
@click.option("--prompt", required=True, help="The text to continue.")
@click.option("--max-new-tokens", type=click.IntRange(min=0), default=300, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0.0), default=0.8, show_default=True, help="0 is greedy; higher is more random.")
@click.option("--top-k", type=click.IntRange(min=1), help="Sample only among the k most likely tokens.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--submission", "target", type=click.Path(file_okay=False, path_type=Path), help="Build the model from this submission's code (default: exercises/, or $COURSE_SUBMISSION).")
@click.option("--no-cache", is_flag=True, help="Use the generation exercise's generate (no key/value cache) and print at the end.")
def generate(directory, prompt, max_new_tokens, temperature, top_k, seed, target, no_cache) -> None:
    """Continue a prompt with a trained model, printing tokens as they come."""
    import codecs
    import sys

    import jax
    import jax.numpy as jnp

    from course import tokenizer
    from course.checkpoint import DEMO_CHECKPOINT, CheckpointError, load_checkpoint
    from course.decoding import stream

    if target is not None:
        _activate(target)
    try:
        model, _ = load_checkpoint(directory or DEMO_CHECKPOINT)
    except CheckpointError as error:
        raise click.BadParameter(str(error), param_hint="--checkpoint") from None
    if top_k is not None and top_k > model.config.vocab_size:
        raise click.BadParameter(f"expected at most the vocabulary size {model.config.vocab_size}, got {top_k}", param_hint="--top-k")
    ids = tokenizer.encode(prompt)
    if ids.max(initial=0) >= model.config.vocab_size:
        raise click.BadParameter(f"this model knows {model.config.vocab_size} token ids (a synthetic task's model?), not the text's bytes", param_hint="--prompt")
    if not 1 <= len(ids) <= model.config.max_seq_len:
        raise click.BadParameter(f"{len(ids)} bytes; expected 1 to {model.config.max_seq_len} (the model's context)", param_hint="--prompt")
    key, batch = jax.random.key(seed), jnp.asarray(ids)[None]
    sys.stdout.write(prompt)
    if no_cache:
        generate_fn = submission.exercise_module("generation").generate
        sys.stdout.write(tokenizer.decode(generate_fn(model, batch, max_new_tokens, key, temperature, top_k)[0, len(ids):]))
    else:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span several byte tokens
        for token in stream(model, batch, max_new_tokens, key, temperature, top_k):
            sys.stdout.write(decoder.decode(bytes([int(token[0])])))
            sys.stdout.flush()
        sys.stdout.write(decoder.decode(b"", final=True))
    sys.stdout.write("\n")


def _activate(target: Path) -> None:
    try:
        submission.activate(target)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise click.BadParameter(str(error), param_hint="--submission") from None


def _train_with_progress(run_training, config, out_dir, resume):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("step {task.completed}/{task.total}"), BarColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("val {task.fields[val]}"),
        TextColumn("{task.fields[rate]} tok/s"), TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=config.steps, loss="-", val="-", rate="-")

        def update(metrics):
            val = metrics["val_loss"]
            fields = {"loss": f"{metrics['loss']:.4f}", "val": f"{val:.4f}" if val is not None else "-",
                      "rate": f"{metrics['tokens_per_second']:,.0f}"}
            bar.update(task, completed=metrics["step"], **fields)
            if not console.is_terminal and metrics["step"] % config.eval_every == 0:
                # A log file gets no live bar: a plain line at each evaluation instead.
                console.print(f"step {metrics['step']}/{config.steps} loss {fields['loss']} val {fields['val']} {fields['rate']} tok/s")

        return run_training(config, out_dir, resume=resume, progress=update)


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the contents of a non-empty OUT_DIR.")
def release(out_dir: Path, force: bool) -> None:
    """Write the student repository to OUT_DIR: course/, exercises/, README, pyproject, CI; nothing hidden."""
    from course.release import ReleaseError
    from course.release import release as write_release

    try:
        written = write_release(out_dir, force=force)
    except ReleaseError as error:
        raise click.ClickException(str(error)) from None
    files = sum(1 for p in written.rglob("*") if p.is_file())
    console.print(f"Wrote the student repository to {written} ({files} files; no reference or grader text found in it).")


@main.command("grade-all")
@click.argument("submissions_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="The results folder: one folder per student.")
@click.option("--jobs", type=click.IntRange(min=1), help="Submissions graded at once (default: one per core).")
@click.option("--force", is_flag=True, help="Regrade every submission, even unchanged ones or another grader version's results.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="One seed for the whole class (default: the results folder's, or random).")
@click.option("-e", "--exercise", "names", multiple=True, help="Only this exercise (repeatable).")
@click.option("--call-seconds", type=click.FloatRange(min=0, min_open=True), help="Time limit of one call of a student's function.")
@click.option("--submission-seconds", type=click.FloatRange(min=0, min_open=True), help="Time limit of one submission's calls together.")
def grade_all(submissions_dir, out, jobs, force, seed, names, call_seconds, submission_seconds) -> None:
    """Grade every student's submission (a folder or .zip each, named by the student id) of SUBMISSIONS_DIR.

    Exits 1 when a submission was rejected or hit a grader error (each is a
    zero with its reason in the results), 0 otherwise.
    """
    _need_graders()
    from graders import Limits
    from graders.batch import BatchError, grade_all as run_grade_all

    for name in names:
        _known_exercise(name)
    limits = Limits(**{k: v for k, v in {"call_seconds": call_seconds, "submission_seconds": submission_seconds}.items() if v is not None})
    with _batch_progress() as (on_start, on_done):
        try:
            result = run_grade_all(submissions_dir, out, jobs=jobs, force=force, seed=seed, exercises=list(names) or None,
                                   limits=limits, on_start=on_start, on_done=on_done)
        except BatchError as error:
            raise click.UsageError(str(error)) from None
    counts = {}
    for outcome in result.outcomes:
        label = "unchanged (skipped)" if outcome.skipped else outcome.status
        counts[label] = counts.get(label, 0) + 1
    console.print(f"{len(result.outcomes)} submissions in {result.seconds:.1f} s (seed {result.seed}, grader {result.grader_version}): "
                  + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f". Results in {escape(str(out))}/")
    for outcome in result.failures:
        console.print(f"[red]{escape(outcome.student)}[/red] {outcome.status}: {escape(outcome.reason[:300])}", soft_wrap=True)
    if result.failures:
        raise SystemExit(1)


def _batch_progress():
    """A rich progress bar for grade-all: done/total, rate, time left and failures so far."""
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    @contextlib.contextmanager
    def progress():
        columns = (TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}/min"),
                   TextColumn("failures {task.fields[failures]}"), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("grade-all", total=None, rate="-", failures=0)
            state = {"failures": 0}

            def on_start(total):
                bar.update(task, total=total)

            def on_done(outcome):
                state["failures"] += outcome.status in ("rejected", "grader_error")
                bar.advance(task)
                elapsed = bar.tasks[0].elapsed or 1e-9
                bar.update(task, rate=f"{60 * bar.tasks[0].completed / elapsed:.1f}", failures=state["failures"])
                if not console.is_terminal:  # a log file gets a line per submission instead of a live bar
                    console.print(f"{bar.tasks[0].completed:g}/{bar.tasks[0].total:g} {outcome.student}: {outcome.status} "
                                  f"{outcome.score:g}/{outcome.max_score:g}" + (" (unchanged, skipped)" if outcome.skipped else ""))

            yield on_start, on_done

    return progress()


@main.command()
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="The report folder.")
@click.option("--published", is_flag=True, help="Show after_due_date / after_published cases in full in the feedback.")
def report(results_dir: Path, out: Path, published: bool) -> None:
    """Write grades.csv, summary.json, feedback/<student>.md and report.html for a grade-all results folder."""
    _need_graders()
    from graders.reports import ReportError, write_report

    try:
        summary = write_report(results_dir, out, published=published)
    except ReportError as error:
        raise click.BadParameter(str(error), param_hint="RESULTS_DIR") from None
    console.print(f"{len(summary['students'])} students, average {summary['average_total']:.1f}/{summary['total_max']:g}; "
                  f"wrote {escape(str(out))}/ (grades.csv, summary.json, feedback/, report.html)")


@main.command()
@click.option("--gradescope", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The bundle to write (OUT.zip).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="One seed for every student (default: drawn now, recorded in the bundle).")
@click.option("-e", "--exercise", "names", multiple=True, help="Only this exercise (repeatable).")
def autograder(out: Path, seed: int | None, names: tuple[str, ...]) -> None:
    """Write a Gradescope autograder bundle: setup.sh, run_autograder, the grader, reference and pinned requirements."""
    _need_graders()
    from graders.autograder import build_bundle

    for name in names:
        _known_exercise(name)
    try:
        path = build_bundle(out, seed=seed, exercises=list(names) or None)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--gradescope") from None
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="--exercise") from None
    console.print(f"Wrote the Gradescope autograder bundle {escape(str(path))} ({path.stat().st_size / 2**20:.1f} MiB); "
                  "upload it as the assignment's autograder (Ubuntu base image).")


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
