"""The Gradescope autograder bundle, run in a temporary folder laid out like /autograder.

Each submission is graded by the bundle's own ``run_autograder`` (a bash script
running the bundled grader), on one small exercise to stay fast; the
``results.json`` it writes is validated against Gradescope's documented schema.
"""

import json
import os
import subprocess
import sys
import zipfile

import jsonschema
import pytest
from click.testing import CliRunner

from course.cli import main
from course.submission import repo_root
from tests.conftest import copy_with_edits

ROOT = repo_root()
EXERCISE = "positional_encoding"
MODULE = "positional_encoding/positional_encoding.py"

# Gradescope's "Autograder Specifications" (results.json), the fields this grader writes.
TEST_SCHEMA = {
    "type": "object",
    "required": ["name", "score", "max_score", "status", "output", "visibility"],
    "properties": {
        "name": {"type": "string"}, "score": {"type": "number"}, "max_score": {"type": "number"},
        "status": {"enum": ["passed", "failed"]}, "output": {"type": "string"},
        "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
    },
}
RESULTS_SCHEMA = {
    "type": "object",
    "required": ["score", "execution_time", "tests"],
    "properties": {
        "score": {"type": "number"}, "execution_time": {"type": "number"}, "output": {"type": "string"},
        "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
        "stdout_visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
        "tests": {"type": "array", "items": TEST_SCHEMA},
    },
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    result = CliRunner().invoke(main, ["autograder", "--gradescope", str(path), "-e", EXERCISE, "--seed", "9"])
    assert result.exit_code == 0, result.output
    return path


def run_bundle(bundle, tmp_path, submission_edits=None, *, nested=False, upload=None):
    """Lays out ``tmp_path`` like /autograder, runs the bundle's run_autograder; returns (process, results.json).

    ``upload``, when given, lays out the submission folder itself instead of a copy of the stubs.
    """
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as zipped:
        zipped.extractall(root / "source")
    for name in ("run_autograder", "setup.sh"):  # zipfile does not restore modes; Gradescope's unzip does
        (root / "source" / name).chmod(0o755)
    if upload is not None:
        upload(root / "submission")
    else:
        copy_with_edits(root / "submission" / ("exercises" if nested else ""), submission_edits)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    process = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=600)
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    return process, results


def test_bundle_holds_scripts_grader_reference_and_pinned_requirements(bundle):
    from importlib.metadata import version

    with zipfile.ZipFile(bundle) as zipped:
        names = set(zipped.namelist())
        requirements = zipped.read("requirements.txt").decode().split()
        config = json.loads(zipped.read("autograder.json"))
        modes = {i.filename: i.external_attr >> 16 for i in zipped.infolist()}
    assert {"setup.sh", "run_autograder", "graders/engine/grading.py", f"graders/suites/test_{EXERCISE}.py",
            f"reference/{MODULE}", "course/submission.py", "pyproject.toml"} <= names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    assert f"jax=={version('jax')}" in requirements and f"flax=={version('flax')}" in requirements
    assert all("==" in r for r in requirements)
    assert config == {"seed": 9, "exercises": [EXERCISE]}
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111


def test_correct_submission_earns_full_marks(bundle, tmp_path):
    process, results = run_bundle(bundle, tmp_path, nested=True)  # uploaded as a repository: exercises/ inside
    assert process.returncode == 0, process.stderr[-3000:]
    total = sum(t["max_score"] for t in results["tests"])
    assert total > 0 and results["score"] == total and all(t["status"] == "passed" for t in results["tests"])
    assert f"Points {total:g}/{total:g}" in process.stdout


def test_wrong_submission_loses_points_with_a_hint(bundle, tmp_path):
    # Right for the paper's base, wrong for any other: the paper's case still counts.
    wrong = {MODULE: ("jnp.float32(base)", "jnp.float32(10000.0)")}
    process, results = run_bundle(bundle, tmp_path, wrong)
    assert process.returncode == 0, process.stderr[-3000:]
    total = sum(t["max_score"] for t in results["tests"])
    assert 0 < results["score"] < total
    assert any("the base argument is not used" in t["output"] for t in results["tests"] if t["status"] == "failed")


def test_hostile_submission_cannot_forge_its_results(bundle, tmp_path):
    # At import: try to write a full-marks results.json and to read the reference, then flood the output.
    results_path = tmp_path / "autograder" / "results" / "results.json"
    reference = tmp_path / "autograder" / "source" / "reference" / MODULE
    code = (
        "import json, pathlib\n"
        f"try:\n    pathlib.Path({str(results_path)!r}).write_text(json.dumps({{'score': 1000, 'tests': []}}))\n"
        "except OSError:\n    pass\n"
        f"try:\n    LEAK = pathlib.Path({str(reference)!r}).read_text()\nexcept OSError:\n    LEAK = ''\n"
        "print('x' * 10_000_000)\n"
        "def sinusoidal_positional_encoding(seq_len, d_model, base=10000.0):\n"
        "    raise ValueError(LEAK[:100])\n"
    )
    process, results = run_bundle(bundle, tmp_path, {MODULE: code})
    assert process.returncode == 0, process.stderr[-3000:]
    assert results["score"] < 1000 and results["score"] <= 3  # only the error cases can pass
    assert len(results["tests"]) > 0
    if os.geteuid() == 0:  # the student's code ran as nobody: the reference was out of its reach
        leaked = (ROOT / "reference" / MODULE).read_text()[3:33]  # what LEAK[:100] would start with (no quote to escape)
        assert leaked not in json.dumps(results), leaked
        assert any(t["output"].rstrip().endswith("in sinusoidal_positional_encoding:") for t in results["tests"])


def test_an_upload_linking_to_the_bundles_reference_is_refused(bundle, tmp_path):
    def linked(submission):
        submission.mkdir(parents=True)
        (submission / "exercises").symlink_to("../source/reference")  # graded as is, it would earn full marks

    process, results = run_bundle(bundle, tmp_path, upload=linked)
    assert process.returncode == 0, process.stderr[-3000:]
    assert results["score"] == 0 and "symbolic link" in results["output"]


def test_bad_bundle_arguments_are_named(tmp_path):
    runner = CliRunner()
    not_zip = runner.invoke(main, ["autograder", "--gradescope", str(tmp_path / "bundle.tar")])
    assert not_zip.exit_code == 2 and "--gradescope" in not_zip.output and ".zip" in not_zip.output
    unknown = runner.invoke(main, ["autograder", "--gradescope", str(tmp_path / "b.zip"), "-e", "nope"])
    assert unknown.exit_code == 2 and "--exercise" in unknown.output
