"""The active-submission mechanism: which file ``exercises.<name>.<name>`` loads."""

import importlib
import os
import subprocess
import sys

import pytest

from course import submission

ROOT = submission.repo_root()


def _module_file(name: str) -> str:
    return importlib.import_module(f"exercises.{name}.{name}").__file__


def test_default_is_the_repository_exercises(monkeypatch):
    monkeypatch.delenv(submission.ENV_VAR, raising=False)
    assert submission.active_submission() == ROOT / "exercises"


def test_active_switches_and_restores(monkeypatch, make_submission):
    monkeypatch.delenv(submission.ENV_VAR, raising=False)
    other = make_submission()
    with submission.active(ROOT / "reference"):
        assert _module_file("attention") == str(ROOT / "reference" / "attention" / "attention.py")
        with submission.active(other):
            assert _module_file("attention") == str(other / "attention" / "attention.py")
        assert _module_file("attention") == str(ROOT / "reference" / "attention" / "attention.py")
    assert submission.ENV_VAR not in os.environ
    assert _module_file("attention") == str(ROOT / "exercises" / "attention" / "attention.py")


def test_a_missing_module_is_an_error_not_a_fallback(make_submission):
    partial = make_submission()
    (partial / "attention" / "attention.py").unlink()
    with submission.active(partial), pytest.raises(ModuleNotFoundError, match="has no attention/attention.py"):
        importlib.import_module("exercises.attention.attention")


def test_tests_and_packages_are_never_redirected(make_submission):
    other = make_submission({"attention/test_attention.py": "raise SystemExit('the submission test ran')\n"})
    with submission.active(other):
        assert importlib.import_module("exercises.attention").__file__ == str(ROOT / "exercises" / "attention" / "__init__.py")
        assert submission.SubmissionFinder().find_spec("exercises.attention.test_attention") is None
        assert submission.SubmissionFinder().find_spec("exercises.attention.conftest") is None


@pytest.mark.parametrize("bad", ["/no/such/submission", __file__])
def test_bad_paths_are_named(bad):
    with pytest.raises((FileNotFoundError, NotADirectoryError), match="submission"):
        submission.activate(bad)


def test_the_environment_variable_reaches_child_processes(tmp_path):
    code = "import exercises.loss.loss as m; print(m.__file__)"
    env = {**os.environ, submission.ENV_VAR: str(ROOT / "reference")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(ROOT / "reference" / "loss" / "loss.py")


def test_reference_and_exercises_name_the_repository_s_folders_from_any_directory(tmp_path, monkeypatch):
    from course.notebook_run import resolve_target

    monkeypatch.chdir(tmp_path)
    assert submission.resolve("reference") == resolve_target("reference") == ROOT / "reference"
    assert submission.resolve("exercises") == ROOT / "exercises"
    (tmp_path / "reference").mkdir()
    assert submission.resolve("reference") == tmp_path / "reference"  # a folder of that name here wins
    with pytest.raises(FileNotFoundError, match="'solutions' does not exist"):
        submission.resolve("solutions")  # only the repository's two folders are known by name
