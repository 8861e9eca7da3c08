"""The ``course`` command: exit codes and messages."""

import os
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from course.cli import main
from course.submission import repo_root

ROOT = repo_root()


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_check_reference_is_green():
    result = run("check", str(ROOT / "reference"), "-e", "positional_encoding")
    assert result.exit_code == 0, result.output
    assert "positional_encoding" in result.output and "10/10" in result.output


def test_check_stubs_exits_non_zero_with_the_hint():
    result = run("check", "-e", "attention")
    assert result.exit_code == 1
    assert "0/14" in result.output
    assert "not implemented yet: implement causal_mask in exercises/attention/attention.py" in result.output
    assert "0/14 visible tests pass. Details: pytest exercises/attention\n" in result.output  # the exercise, not <name>


def test_check_bad_arguments_are_named():
    unknown = run("check", "-e", "nope")
    assert unknown.exit_code == 2 and "--exercise" in unknown.output and "known: jax_basics" in unknown.output
    missing = run("check", "/no/such/dir")
    assert missing.exit_code == 2 and "TARGET" in missing.output and "does not exist" in missing.output


def test_stubs_and_fixtures_check_pass_on_the_committed_tree():
    assert run("stubs", "--check").exit_code == 0
    assert run("fixtures", "--check").exit_code == 0


def test_stale_stubs_are_reported(tmp_path):
    import shutil

    reference = tmp_path / "reference"
    shutil.copytree(ROOT / "reference", reference)
    path = reference / "loss" / "loss.py"
    path.write_text(path.read_text().replace('"""Cross-entropy', '"""Changed: cross-entropy'))
    result = run("stubs", "--check", "--reference", str(reference))
    assert result.exit_code == 1
    assert "exercises/loss/loss.py: differs from the generated stub" in result.output
    assert "stubs are stale" in result.output


def test_python_dash_m_course_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "course", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "check" in out.stdout


def test_instructor_verbs_come_from_their_packages():
    # course/ defines the student's verbs; authoring/ and graders/ register theirs by entry point.
    from authoring import cli as authoring_cli
    from graders import cli as grader_cli

    ctx = click.Context(main)
    assert {"check", "train", "generate", "notebooks"} <= set(main.commands)
    assert main.get_command(ctx, "release") is authoring_cli.release and main.get_command(ctx, "grade") is grader_cli.grade


def test_version():
    from course import __version__

    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("course, version ")
    assert result.output.strip() == f"course, version {__version__}"


@pytest.mark.parametrize("verb", [["train", "--corpus", "reverse", "--steps", "2"], ["generate", "--prompt", "def "]])
def test_verbs_that_run_stubs_say_one_line(verb, tmp_path):
    result = run(*verb, "--submission", str(ROOT / "exercises"), *(["--out", str(tmp_path / "run")] if verb[0] == "train" else []))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "not implemented yet: implement DecoderBlock.__init__ in exercises/transformer/transformer.py" in line
    assert "pytest exercises/transformer" in line and str(ROOT / "exercises" / "transformer" / "transformer.py") in line


@pytest.mark.parametrize(("args", "option"), [
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--seed", str(2**32)], "--seed"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--learning-rate", "0"], "--learning-rate"),
    (["train", "--devices", "0"], "--devices"),
    (["generate", "--prompt", "def ", "--seed", "-1"], "--seed"),
    # NaN passes every comparison of a range as false, and the infinities pass a lower bound: both are refused.
    (["train", "--learning-rate", "nan"], "--learning-rate"),
    (["train", "--learning-rate", "inf"], "--learning-rate"),
    (["generate", "--prompt", "def ", "--temperature", "nan"], "--temperature"),
    (["generate", "--prompt", "def ", "--temperature", "inf"], "--temperature"),
    (["generate", "--prompt", "def ", "--temperature", "-inf"], "--temperature"),
])
def test_bad_option_values_are_refused_when_the_command_line_is_read(args, option, tmp_path):
    # A submission that does not exist would be the first error once the verb's body runs: the value's must come before.
    nowhere = ["--submission", str(tmp_path / "nowhere")]
    result = run(*args, *nowhere, *(["--out", str(tmp_path / "run")] if args[0] == "train" else []))
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_verbs_find_the_repository_s_reference_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checked = run("check", "reference", "-e", "positional_encoding")
    assert checked.exit_code == 0 and "10/10" in checked.output, checked.output
    # train and generate switch the submission in first; what fails after it is the corpus or the checkpoint.
    trained = run("train", "--submission", "reference", "--corpus", str(tmp_path / "no-such.txt"), "--out", str(tmp_path / "run"))
    assert f"submission {ROOT / 'reference'}" in trained.output.replace("\n", ""), trained.output
    generated = run("generate", "--prompt", "x", "--submission", "reference", "--checkpoint", str(tmp_path / "no-run"))
    assert generated.exit_code == 2 and "--checkpoint" in generated.output and "--submission" not in generated.output, generated.output


LONG = "AssertionError: loss (next_token): 1 of 1 values differ from the expected ones (float32[]). Largest error 0.991"


def table_lines(output: str, width: int) -> list[str]:
    """The table's rows of ``output``, checked to fit ``width`` columns."""
    lines = [line for line in output.splitlines() if line.startswith("│")]
    assert lines and all(len(line) <= width for line in lines), output
    return lines


@pytest.mark.parametrize("width", [80, 50])
def test_the_check_table_keeps_names_and_counts_whole_at_narrow_widths(width, monkeypatch):
    from rich.console import Console

    from course import catalog
    from course.check import ExerciseCheck, TestOutcome

    failed = TestOutcome("exercises/loss/test_loss.py::test_matches_reference", "failed", LONG)
    fake = [ExerciseCheck(e, (failed, *[TestOutcome("t", "passed", "")] * 13)) for e in catalog.EXERCISES]
    monkeypatch.setattr("course.check.run_visible_tests", lambda target, names: fake)
    monkeypatch.setattr("course.cli.console", Console(width=width))
    result = run("check")
    lines = table_lines(result.output, width)
    for exercise in catalog.EXERCISES:
        assert any(f"│ {exercise.name} " in line and "│ 13/14 " in line for line in lines), result.output
    assert (width == 80) == any("AssertionError: loss" in line for line in lines)  # too narrow: the failures only below
    assert result.output.count(LONG) == len(catalog.EXERCISES)


@pytest.mark.parametrize("width", [80, 50])
def test_the_grade_table_keeps_names_and_points_whole_at_narrow_widths(width, monkeypatch, tmp_path):
    from rich.console import Console

    import graders
    from graders.results.scores import Case, CaseStatus, ExerciseScore, GradingResult

    names = graders.graded_exercises()
    failed = Case("x", "test_outputs_match_reference[one_long_case_name]", 0, 1, CaseStatus.FAILED, LONG)
    passed = Case("x", "test_other", 1, 1, CaseStatus.PASSED)
    fake = GradingResult(str(ROOT / "exercises"), 7, tuple(ExerciseScore(n, (failed, *[passed] * 11)) for n in names))
    monkeypatch.setattr(graders, "grade", lambda *args, **kwargs: fake)
    monkeypatch.setattr("graders.cli.console", Console(width=width))
    result = run("grade", "--out", str(tmp_path))
    lines = table_lines(result.output, width)
    for name in names:
        assert any(f"│ {name} " in line and "│ 11/12 " in line for line in lines), result.output


@pytest.mark.parametrize("width", [80, 110])
def test_the_notebook_table_keeps_names_and_status_whole_at_narrow_widths(width):
    import nbformat
    from rich.console import Console

    from course import syllabus
    from course.notebook_run import CellError, NotebookRun, print_runs

    error = CellError(3, "ValueError", "a rather long message that explains at length what went wrong in this cell", "tb", True)
    runs = [NotebookRun(s, nbformat.v4.new_notebook(), 12.3, error if s.number % 2 else None) for s in syllabus.SECTIONS]
    console = Console(width=width, record=True)
    print_runs(runs, console)
    lines = table_lines(console.export_text(), width)
    for run in runs:
        assert any(f"│ {run.section.notebook.name} " in line and ("stopped at cell 3" if run.error else "│ ok ") in line
                   for line in lines), console.export_text()
    assert (width == 110) == any("ValueError: a rather long" in line for line in lines)  # at 80: the errors only below


def test_generate_on_the_stubs_runs_the_compiled_demo_and_prints_python_looking_text(tmp_path):
    # A fresh student checkout: no exercise written, the `course` process itself.
    env = {k: v for k, v in os.environ.items() if k != "COURSE_SUBMISSION"} | {"COURSE_COMPILATION_CACHE": "0"}
    done = subprocess.run([sys.executable, "-m", "course", "generate", "--prompt", "def ", "--max-new-tokens", "200"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert text.startswith("def ") and len(text) > 150 and text.count("\n") >= 3, text
    assert sum(c.isascii() and (c.isprintable() or c == "\n") for c in text) > 0.95 * len(text), text
    assert re.search(r"[(:=]", text) and re.search(r"\n {4}", text), text  # brackets, colons or assignments; indented lines


@pytest.mark.parametrize("verb", [
    ["check", "-e", "attention"],
    ["train", "--corpus", "reverse", "--steps", "2", "--out", "{tmp}/run"],
    ["generate", "--prompt", "def ", "--checkpoint", str(ROOT / "course" / "demo")],  # the model from your code
    ["notebooks", "--execute", "-n", "4", "--quick"],
])
def test_every_student_verb_on_the_stubs_names_the_function_to_write_and_shows_no_traceback(verb, tmp_path):
    # As a student runs them: the `course` process itself, on the shipped stubs.
    env = {k: v for k, v in os.environ.items() if k != "COURSE_SUBMISSION"}
    args = [a.replace("{tmp}", str(tmp_path)) for a in verb]
    done = subprocess.run([sys.executable, "-m", "course", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output and 'File "' not in output, output
    assert re.search(r"not implemented yet: implement [\w.]+ in exercises/\w+/\w+\.py", output), output


def test_a_repeated_exercise_is_checked_once():
    from course.cli import exercise_names

    ctx = click.Context(main)
    param = next(p for p in main.commands["check"].params if p.name == "exercises")
    assert exercise_names(ctx, param, ("jax_basics", "attention", "jax_basics")) == ["jax_basics", "attention"]
    assert exercise_names(ctx, param, ()) is None
    result = run("check", str(ROOT / "reference"), "-e", "positional_encoding", "-e", "positional_encoding", "--progress")
    assert result.exit_code == 0 and "Points 10/10" in result.output, result.output
    assert "Details" not in result.output  # nothing left to look at


def test_check_progress_counts_every_visible_test_whatever_the_submission(tmp_path):
    # The total of `Points X/Y` is the visible tests' number, whatever fails to import; the error names its file and line.
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(ROOT / "reference", broken)
    module = broken / "attention" / "attention.py"
    module.write_text(module.read_text() + "def oops(:\n")
    line = len(module.read_text().splitlines())
    (tmp_path / "empty").mkdir()
    chosen = ["-e", "attention", "-e", "transformer"]
    whole = run("check", "--progress", str(ROOT / "reference"), *chosen)
    assert whole.exit_code == 0 and "Points 29/29" in whole.output, whole.output
    for target in (broken, tmp_path / "empty"):
        result = run("check", "--progress", str(target), *chosen)
        assert result.exit_code == 1 and "Points 0/29" in result.output, result.output
        assert "0/14" in result.output and "0/15" in result.output, result.output
    result = run("check", "--progress", str(broken), *chosen)
    assert f"SyntaxError in attention/attention.py, line {line}: invalid syntax" in result.output, result.output
    assert f"Details: COURSE_SUBMISSION={broken} pytest exercises/attention exercises/transformer" in result.output.replace("\n", "")


@pytest.mark.parametrize("verb", [["train", "--corpus", "reverse", "--steps", "2"], ["generate", "--prompt", "def "]])
@pytest.mark.parametrize("submission", ["empty", "partial", "syntax_error"])
def test_train_and_generate_on_an_incomplete_submission_say_one_line_naming_it(verb, submission, tmp_path):
    import shutil

    target = tmp_path / "submission"
    target.mkdir()
    if submission != "empty":  # every module but the transformer's
        for name in ("jax_basics", "positional_encoding", "attention", "loss", "training", "generation"):
            shutil.copytree(ROOT / "reference" / name, target / name)
    if submission == "syntax_error":
        shutil.copytree(ROOT / "reference" / "transformer", target / "transformer")
        module = target / "transformer" / "transformer.py"
        module.write_text(module.read_text() + "def oops(:\n")
    result = run(*verb, "--submission", str(target), *(["--out", str(tmp_path / "run")] if verb[0] == "train" else []))
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "--submission" in line, result.output
    assert ("SyntaxError in transformer/transformer.py, line" if submission == "syntax_error" else "has no ") in line, line


def test_notebook_options_that_need_execute_are_refused_without_it(tmp_path):
    for args in (["--with", "reference"], ["--with", str(tmp_path / "nowhere")], ["--quick"], ["-j", "3"]):
        result = run("notebooks", *args)
        assert result.exit_code == 2 and "needs --execute" in result.output, (args, result.output)
        assert args[0].replace("-j", "--jobs") in result.output, (args, result.output)
    assert run("notebooks").exit_code == 0
