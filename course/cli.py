"""The ``course`` command: the student's verbs, and the verbs other packages register.

Each verb is a thin layer over a keyword-only Python function whose defaults
are the verb's. This module holds the verbs every install has (``check``,
``train``, ``generate``, ``notebooks``); the instructor's packages add theirs
through the ``course.commands`` entry-point group (``authoring.cli``,
``graders.cli``), so a student's install, which has neither, shows the student
verbs only.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from course import __version__, catalog, submission
from course.host_memory import keep_freed_memory
from course.seeds import SEED_LIMIT

console = Console()
PLUGIN_GROUP = "course.commands"


class CourseGroup(click.Group):
    """The ``course`` group: the verbs of every installed package, and one line, never a traceback, for a stub.

    The instructor's packages register their verbs when the group is first asked
    for its verbs, not when this module is imported: they import this module.
    """

    plugins_loaded = False

    def load_plugins(self) -> None:
        """Lets every package of the ``course.commands`` entry points add its verbs (once)."""
        if not self.plugins_loaded:
            self.plugins_loaded = True
            for entry_point in entry_points(group=PLUGIN_GROUP):
                entry_point.load()(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_plugins()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self.load_plugins()
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NotImplementedError as error:
            from course.notebook_helpers import NOT_IMPLEMENTED

            if not str(error).startswith(NOT_IMPLEMENTED):
                raise
            raise click.ClickException(not_implemented_advice(str(error))) from None


def not_implemented_advice(message: str) -> str:
    """A stub's message with the file to edit and the tests to run: ``"not implemented yet: ... Check it with: ..."``."""
    found = re.search(r"exercises/(?P<name>\w+)/(?P<file>\w+\.py)", message)
    if found is None:
        return message
    return (f"{message}. Your file: {submission.active_submission() / found['name'] / found['file']}; "
            f"check it with: pytest exercises/{found['name']} (or run this command with --submission DIR to use other code)")


@click.group(cls=CourseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="course")
def main() -> None:
    """Introduction to Transformers with JAX: exercises, checks and course tools."""
    keep_freed_memory()  # before any verb starts JAX: XLA on CPU then reuses its scratch memory


# Helpers shared by every package's verbs.


def exercise_names(ctx: click.Context, param: click.Parameter, names: tuple[str, ...]) -> list[str] | None:
    """Click callback of ``-e/--exercise``: known names, checked at parse time, each once (first seen first); ``None`` for all."""
    for name in names:
        try:
            catalog.get(name)
        except KeyError as error:
            raise click.BadParameter(error.args[0], ctx=ctx, param=param) from None
    return list(dict.fromkeys(names)) or None  # a repeated name would run, and score, an exercise twice


seed_range = click.IntRange(0, SEED_LIMIT - 1)  # course.seeds' range, checked when the command line is read


class FiniteFloatRange(click.FloatRange):
    """A ``click.FloatRange`` that refuses NaN and the infinities, which pass its comparisons (NaN fails none)."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number

exercise_option = click.option("-e", "--exercise", "exercises", multiple=True, callback=exercise_names,
                               help="Only this exercise (repeatable).")


def shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    root = submission.repo_root()
    return str(path.relative_to(root) if path.is_relative_to(root) else path)


def report_files(rows: Iterable[tuple[Path, str | None]]) -> None:
    """One line per file: its problem in yellow, or "up to date"."""
    for path, problem in rows:
        console.print(f"  {shown(path)}: " + (f"[yellow]{problem}[/yellow]" if problem else "[green]up to date[/green]"))


def activate(target: Path | None, param_hint: str = "--submission") -> None:
    """Makes ``target`` the active submission (nothing when ``None``), naming the option on a bad path."""
    if target is None:
        return
    try:
        submission.activate(target)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise click.BadParameter(str(error), param_hint=param_hint) from None


def submission_problem(error: BaseException) -> str | None:
    """One line for an exercise module of the active submission that is missing or does not parse; ``None`` otherwise."""
    if isinstance(error, SyntaxError) and error.filename:
        root, file = submission.active_submission(), Path(error.filename).resolve()
        if file.is_relative_to(root):
            return f"{type(error).__name__} in {file.relative_to(root)}, line {error.lineno}: {error.msg}"
    if isinstance(error, ImportError) and (error.name or "").startswith(submission.PACKAGE + "."):
        return str(error)
    return None


@contextlib.contextmanager
def submission_errors(target: Path | None) -> Iterator[None]:
    """Turns a missing or unparsable module of the active submission into one line naming --submission (when given)."""
    try:
        yield
    except (ImportError, SyntaxError) as error:
        problem = submission_problem(error)
        if problem is None:
            raise
        if target is not None:
            raise click.BadParameter(problem, param_hint="--submission") from None
        raise click.ClickException(problem) from None


# The student's verbs.


@main.command()
@click.argument("target", required=False, type=click.Path(file_okay=False, path_type=Path))
@exercise_option
@click.option("--progress", is_flag=True,
              help="Print `Points X/Y` and fail only when something is broken, not while exercises are unfinished (CI).")
def check(target: Path | None, exercises: list[str] | None, progress: bool) -> None:
    """Run the visible tests of every exercise against TARGET (default: exercises/).

    Exits 1 until every visible test passes.

    With --progress (the student repository's CI runs it all term), also
    prints `Points X/Y` (visible tests passed / visible tests, for GitHub
    Classroom) and exits 1 only when something is broken: an exercise module
    that does not import (a syntax or import error), a test that fails with an
    exception other than an AssertionError (e.g. a ValueError raised by your
    code, or a timeout), or an error in a test's setup. A test that fails with
    an AssertionError (the values differ), with the stub's "not implemented
    yet" or with "DID NOT RAISE" (a check your code does not make yet) is
    progress, not breakage.
    """
    from course.check import run_visible_tests
    from course.tables import summary_table

    try:
        results = run_visible_tests(target, exercises)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise click.BadParameter(str(error), param_hint="TARGET") from None
    rows = []
    for result in results:
        style = "green" if result.ok else "red"
        cells = (result.exercise.name, result.exercise.level, f"[{style}]{result.passed}/{result.total}[/{style}]")
        rows.append((cells, result.first_failure.message if result.first_failure else ""))
    title = f"Visible tests of {target if target is not None else submission.default_submission()}"
    console.print(summary_table(title, ("exercise", "level", "passed"), "first failure", rows, width=console.width))
    for result in results:
        if result.first_failure:
            failure = result.first_failure
            console.print(escape(f"{failure.nodeid}\n    {failure.message}"), soft_wrap=True)
    passed, total = sum(r.passed for r in results), sum(r.total for r in results)
    unfinished = [f"exercises/{r.exercise.name}" for r in results if not r.ok]
    command = ("" if target is None else f"{submission.ENV_VAR}={target} ") + "pytest " + " ".join(unfinished)
    console.print(escape(f"{passed}/{total} visible tests pass." + (f" Details: {command}" if unfinished else "")), soft_wrap=True)
    if progress:
        click.echo(f"Points {passed}/{total}")
        for result in (r for r in results if r.broken):
            first = result.broken[0]
            console.print(f"[red]broken[/red] {escape(result.exercise.name)}: " + escape(
                f"{len(result.broken)} test(s) end in an error, not a wrong value; first {first.nodeid}\n    {first.message}"),
                soft_wrap=True)
    failing = any(r.broken for r in results) if progress else not all(r.ok for r in results)
    if failing:
        raise SystemExit(1)


@main.command()
@click.option("--config", "run", help="A named run: tiny, small or demo. Default: tiny for a synthetic --corpus, small otherwise.")
@click.option("--corpus", help="stdlib, a UTF-8 text file, or a synthetic task (reverse, sort). Default: the run's.")
@click.option("--steps", type=click.IntRange(min=1), help="Total optimizer steps. Default: the run's.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Sequences per step, split over the devices. Default: the run's.")
@click.option("--learning-rate", type=FiniteFloatRange(min=0, min_open=True), help="Peak AdamW learning rate. Default: the run's.")
@click.option("--seed", type=seed_range, help="Seed of the weights and the data order. Default: the run's.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/latest"), show_default=True, help="The run directory.")
@click.option("--resume", is_flag=True, help="Continue the checkpoint in --out, bit for bit.")
@click.option("--submission", "target", type=click.Path(file_okay=False, path_type=Path), help="Train with this submission's code (default: exercises/, or $COURSE_SUBMISSION).")
@click.option("--devices", type=click.IntRange(min=1), help="On a CPU: split it into this many virtual devices (data parallel).")
def train(run, corpus, steps, batch_size, learning_rate, seed, out_dir, resume, target, devices) -> None:
    """Train the course's TransformerLM from scratch with your train_step."""
    if devices is not None:
        from course.train import set_host_device_count

        try:
            set_host_device_count(devices)
        except (ValueError, RuntimeError) as error:
            raise click.BadParameter(str(error), param_hint="--devices") from None
    import dataclasses

    from course.checkpoint import CheckpointError
    from course.model import CONFIGS
    from course.train import RUNS, SYNTHETIC, ConfigError
    from course.train import train as run_training

    if run is None:
        run = "tiny" if corpus in SYNTHETIC else "small"
    if run not in RUNS:
        raise click.BadParameter(f"expected one of {sorted(RUNS)}, got {run!r}", param_hint="--config")
    activate(target)
    overrides = {"corpus": corpus, "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed}
    try:
        config = dataclasses.replace(RUNS[run], **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as error:
        raise click.BadParameter(str(error), param_hint="--" + error.field.replace("_", "-")) from None
    console.print(f"[bold]run[/bold] {config}")
    console.print(f"[bold]model[/bold] {CONFIGS[config.model]}")
    console.print(f"[bold]submission[/bold] {submission.active_submission()}")
    try:
        with submission_errors(target):
            result = _train_with_progress(run_training, config, out_dir, resume)
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    console.print(
        f"step {result.step}: train loss {result.train_loss:.4f}, validation loss {result.val_loss:.4f}"
        + (f", accuracy {result.val_accuracy:.3f}" if result.val_accuracy is not None else "")
        + f"; {result.seconds:.1f} s, {result.tokens_per_second:,.0f} tokens/s. Wrote {out_dir}/"
    )


def _train_with_progress(run_training, config, out_dir, resume):
    from course.progress import progress_bar

    fields = {"loss": "loss {value}", "val": "val {value}", "rate": "{value} tok/s"}
    with progress_bar(console, label="step", total=config.steps, fields=fields) as bar:

        def update(metrics):
            val = metrics["val_loss"]
            shown = {"loss": f"{metrics['loss']:.4f}", "val": f"{val:.4f}" if val is not None else "-",
                     "rate": f"{metrics['tokens_per_second']:,.0f}"}
            line = (f"step {metrics['step']}/{config.steps} loss {shown['loss']} val {shown['val']} {shown['rate']} tok/s"
                    if metrics["step"] % config.eval_every == 0 else None)
            bar.update(metrics["step"], line=line, **shown)

        return run_training(config, out_dir, resume=resume, progress=update)


@main.command()
@click.option("--checkpoint", "directory", type=click.Path(path_type=Path), help="A run directory of `course train` (default: the shipped demo model, course/demo).")
@click.option("--prompt", required=True, help="The text to continue.")
@click.option("--max-new-tokens", type=click.IntRange(min=0), default=300, show_default=True)
@click.option("--temperature", type=FiniteFloatRange(min=0.0), default=0.8, show_default=True, help="0 is greedy; higher is more random.")
@click.option("--top-k", type=click.IntRange(min=1), help="Sample only among the k most likely tokens.")
@click.option("--seed", type=seed_range, default=0, show_default=True, help="Seed of the sampling.")
@click.option("--submission", "target", type=click.Path(file_okay=False, path_type=Path),
              help="Build the model from this submission's code (default for --checkpoint: exercises/, or $COURSE_SUBMISSION). "
                   "Without it and --checkpoint, the shipped demo runs compiled, with no exercise code.")
@click.option("--no-cache", is_flag=True, help="Use the generation exercise's generate (no key/value cache) and print at the end.")
def generate(directory, prompt, max_new_tokens, temperature, top_k, seed, target, no_cache) -> None:
    """Continue a prompt with a trained model, printing tokens as they come.

    Without --checkpoint, --submission and --no-cache it runs the shipped demo
    model compiled (course/demo/model.jaxexport), so it works before any
    exercise is written; otherwise the model is built from the active
    submission's code.
    """
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed)
    if directory is None and target is None and not no_cache:
        _print_stream(prompt, _compiled_demo_pieces(prompt, settings))
        return
    with submission_errors(target):  # the model's modules are imported as it is built, and as the tokens come
        _print_stream(prompt, _model_pieces(directory, target, prompt, settings, cache=not no_cache))


def _compiled_demo_pieces(prompt: str, settings: dict):
    from course import compiled_demo
    from course.testing.compilation_cache import use_compilation_cache

    use_compilation_cache()  # a rerun loads the two programs instead of compiling them: the first token in well under a second
    try:
        demo = compiled_demo.load()
    except compiled_demo.DemoLoadError as error:
        raise click.ClickException(str(error)) from None
    try:
        return compiled_demo.continue_text(demo, prompt, **settings)
    except compiled_demo.SettingError as error:
        raise click.BadParameter(str(error), param_hint="--" + error.field.replace("_", "-")) from None


def _model_pieces(directory: Path | None, target: Path | None, prompt: str, settings: dict, cache: bool):
    from course.checkpoint import DEMO_CHECKPOINT, CheckpointError, load_checkpoint
    from course.generate import PromptError, continue_text

    activate(target)
    try:
        model, _ = load_checkpoint(directory or DEMO_CHECKPOINT)
    except CheckpointError as error:
        raise click.BadParameter(str(error), param_hint="--checkpoint") from None
    try:
        return continue_text(model, prompt, cache=cache, **settings)
    except PromptError as error:
        raise click.BadParameter(str(error), param_hint="--" + error.field.replace("_", "-")) from None


def _print_stream(prompt: str, pieces) -> None:
    import sys

    sys.stdout.write(prompt)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def sections_of(ctx: click.Context, param: click.Parameter, numbers: tuple[int, ...]):
    """Click callback of ``-n/--section``: the syllabus sections named, or all of them."""
    from course import syllabus

    try:
        return tuple(syllabus.get(n) for n in numbers) or syllabus.SECTIONS
    except KeyError as error:
        raise click.BadParameter(error.args[0], ctx=ctx, param=param) from None


def notebook_target(target: str | None) -> Path:
    """The submission of ``--with`` (``reference`` or a path), naming the option when it is not a folder."""
    from course.notebook_run import resolve_target

    try:
        return resolve_target(target)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise click.BadParameter(str(error), param_hint="--with") from None


@main.command()
@click.option("--execute", is_flag=True, help="Run the notebooks top to bottom, each in a Jupyter kernel.")
@click.option("--with", "target", metavar="reference|PATH", help="The submission they run (default: exercises/).")
@click.option("--quick", is_flag=True, help="The small setting of long cells (COURSE_QUICK=1).")
@click.option("-n", "--section", "sections", multiple=True, type=int, callback=sections_of, help="Only this section (repeatable).")
@click.option("-j", "--jobs", default=None, type=click.IntRange(min=1), help="Kernels at once (default: 2).")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="With --execute: write the executed notebooks, with their outputs, into this folder (not course/notebooks/).")
def notebooks(execute: bool, target: str | None, quick: bool, sections, jobs: int | None, output: Path | None) -> None:
    """List the course's notebooks, or execute them against your exercises."""
    if not execute:
        if output is not None:
            raise click.UsageError("--output needs --execute: only executed notebooks are written")
        given = [option for option, value in (("--with", target), ("--quick", quick), ("--jobs", jobs)) if value]
        if given:
            raise click.UsageError(f"{', '.join(given)} needs --execute: without it the notebooks are only listed, not run")
        for section in sections:
            console.print(f"{section.number}. {section.title} ({section.level}): {shown(section.notebook)}")
        return
    from course.notebook_run import execute_notebooks, output_folder, print_runs

    if output is not None:
        try:
            output_folder(output)
        except (ValueError, NotADirectoryError) as error:
            raise click.BadParameter(str(error), param_hint="--output") from None
    runs = execute_notebooks(sections, target=notebook_target(target), quick=quick, output=output,
                             **({"jobs": jobs} if jobs else {}))
    print_runs(runs, console)
    if output is not None:
        console.print(f"Wrote the executed notebooks to {shown(output_folder(output))}/")
    if not all(run.ok for run in runs):
        raise SystemExit(1)
