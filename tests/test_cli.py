"""The ``course`` command: exit codes and messages."""

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
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("course, version ")


@pytest.mark.parametrize("verb", [["train", "--corpus", "reverse", "--steps", "2"], ["generate", "--prompt", "def "]])
def test_verbs_that_run_stubs_say_one_line(verb, tmp_path):
    result = run(*verb, "--submission", str(ROOT / "exercises"), *(["--out", str(tmp_path / "run")] if verb[0] == "train" else []))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "not implemented yet: implement DecoderBlock.__init__ in exercises/transformer/transformer.py" in line
    assert "pytest exercises/transformer" in line and str(ROOT / "exercises" / "transformer" / "transformer.py") in line
