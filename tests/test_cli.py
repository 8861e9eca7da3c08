"""The ``course`` command: exit codes and messages."""

import subprocess
import sys

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


def test_grading_verbs_explain_when_the_grader_is_absent(monkeypatch, tmp_path):
    # As in a student repository, where graders/ is not shipped.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "graders" else real(name, *a))
    for verb in (["grade"], ["report", str(tmp_path), "--out", str(tmp_path / "r")],
                 ["grade-all", str(tmp_path), "--out", str(tmp_path / "g")], ["autograder", "--gradescope", str(tmp_path / "a.zip")]):
        result = run(*verb)
        assert result.exit_code == 1 and "student repository does not include" in result.output, (verb, result.output)
