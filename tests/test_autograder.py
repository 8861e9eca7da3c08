"""The Gradescope autograder bundle, run in a temporary folder laid out like /autograder.

Each submission is graded by the bundle's own ``run_autograder`` (a bash script
running the bundled grader), on one small exercise to stay fast; the
``results.json`` it writes is validated against Gradescope's documented schema.
The bundle's ``setup.sh`` runs with a stand-in for uv (no network in the
project's tests); with ``COURSE_BASE_PYTHON`` naming a Python 3.10 (the
Ubuntu 22.04 image's), a test runs it for real: uv from the package index,
the locked environment on a Python that jax supports.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile

import jsonschema
import pytest
from click.testing import CliRunner

from authoring import lock
from course.cli import main
from course.submission import repo_root
from tests.conftest import copy_with_edits

ROOT = repo_root()
EXERCISE = "positional_encoding"
MODULE = "positional_encoding/positional_encoding.py"

# Gradescope's "Autograder Specifications" (results.json), the fields this grader writes.
FORMATS = ["text", "html", "simple_format", "md", "ansi"]
TEST_SCHEMA = {
    "type": "object",
    "required": ["name", "score", "max_score", "status", "output", "visibility"],
    "properties": {
        "name": {"type": "string"}, "score": {"type": "number"}, "max_score": {"type": "number"},
        "status": {"enum": ["passed", "failed"]}, "output": {"type": "string"},
        "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
        "output_format": {"enum": FORMATS}, "tags": {"type": "array", "items": {"type": "string"}}, "extra_data": {"type": "object"},
    },
}
RESULTS_SCHEMA = {
    "type": "object",
    "required": ["score", "execution_time", "tests"],
    "properties": {
        "score": {"type": "number"}, "execution_time": {"type": "number"}, "output": {"type": "string"},
        "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
        "stdout_visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
        "tests": {"type": "array", "items": TEST_SCHEMA}, "output_format": {"enum": FORMATS}, "extra_data": {"type": "object"},
        "leaderboard": {"type": "array", "items": {"type": "object", "required": ["name", "value"]}},
    },
}
# The notebook stack and the instructor's tools: never in the grader's environment.
NOT_FOR_GRADING = {"nbformat", "nbconvert", "nbclient", "ipykernel", "ipywidgets", "matplotlib", "jupytext", "jinja2",
                   "django-static-mathjax", "import-linter", "tqdm", "click"}
# A stand-in for uv in setup.sh: records its arguments; its `venv` makes an environment that runs this Python.
FAKE_UV = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/uv.log"
if [[ "$1" == venv ]]; then
    mkdir -p "${@: -1}/bin"
    printf '#!/bin/sh\nexec %s "$@"\n' "$PYTHON_FOR_FAKE_UV" > "${@: -1}/bin/python"
    chmod +x "${@: -1}/bin/python"
fi
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    result = CliRunner().invoke(main, ["autograder", "--gradescope", str(path), "-e", EXERCISE, "--seed", "9"])
    assert result.exit_code == 0, result.output
    return path


def unpack(bundle, root):
    """Unpacks the bundle into ``root/source`` as Gradescope does; returns ``root``."""
    with zipfile.ZipFile(bundle) as zipped:
        zipped.extractall(root / "source")
    for name in ("run_autograder", "setup.sh"):  # zipfile does not restore modes; Gradescope's unzip does
        (root / "source" / name).chmod(0o755)
    return root


def run_bundle(bundle, tmp_path, submission_edits=None, *, nested=False, upload=None, env=None):
    """Lays out ``tmp_path`` like /autograder, runs the bundle's run_autograder; returns (process, results.json).

    ``upload``, when given, lays out the submission folder itself instead of a copy of the stubs; ``env``
    replaces the default environment (this Python as the grader's).
    """
    root = unpack(bundle, tmp_path / "autograder")
    if upload is not None:
        upload(root / "submission")
    else:
        copy_with_edits(root / "submission" / ("exercises" if nested else ""), submission_edits)
    env = env or {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    process = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=600)
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    return process, results


def run_setup(root, env):
    """Runs the bundle's setup.sh in ``root/source`` with ``env``; fails the test when it fails."""
    process = subprocess.run([str(root / "source" / "setup.sh")], env=env, capture_output=True, text=True, timeout=1200)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return process


def test_bundle_holds_scripts_grader_reference_and_the_locks(bundle):
    with zipfile.ZipFile(bundle) as zipped:
        names = set(zipped.namelist())
        locked = zipped.read("requirements.lock").decode()
        config = json.loads(zipped.read("autograder.json"))
        modes = {i.filename: i.external_attr >> 16 for i in zipped.infolist()}
    assert {"setup.sh", "run_autograder", "bootstrap.lock", "graders/engine/grading.py", f"graders/suites/test_{EXERCISE}.py",
            f"reference/{MODULE}", "course/submission.py", "pyproject.toml"} <= names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    assert locked == (ROOT / lock.LOCKS / lock.GRADING_LOCK).read_text()
    assert config == {"seed": 9, "exercises": [EXERCISE]}
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111


def test_a_failed_build_leaves_the_last_bundle_whole(bundle, tmp_path, monkeypatch):
    from graders import autograder

    previous = shutil.copyfile(bundle, tmp_path / "autograder.zip")

    def fails(folder):
        raise OSError(f"cannot read {folder}")

    monkeypatch.setattr(autograder, "_files", fails)
    with pytest.raises(OSError, match="cannot read"):
        autograder.build_bundle(previous, seed=1, exercises=[EXERCISE])
    assert previous.read_bytes() == bundle.read_bytes() and [p.name for p in tmp_path.iterdir()] == ["autograder.zip"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o666 & ~umask  # a bundle to share, not the temporary file's 0600


def test_the_locks_match_pyproject_and_leave_out_the_notebook_stack():
    assert lock.stale(ROOT) == []
    text = (ROOT / lock.LOCKS / lock.GRADING_LOCK).read_text()
    pinned = lock.pins(text)
    assert {"jax", "jaxlib", "flax", "optax", "pytest", "pytest-json-report"} <= set(pinned)
    assert not NOT_FOR_GRADING & set(pinned), NOT_FOR_GRADING & set(pinned)
    pins_lines = [line for line in text.splitlines() if "==" in line and not line.startswith("#")]
    assert len(pins_lines) == len(pinned) and all(line.endswith(" \\") for line in pins_lines)  # each followed by its hashes
    assert text.count("--hash=sha256:") >= len(pinned)


def test_the_staleness_check_names_what_changed(tmp_path):
    (tmp_path / "graders").mkdir()
    shutil.copytree(ROOT / lock.LOCKS, tmp_path / lock.LOCKS)
    pyproject = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('"jax>=0.10,<0.13"', '"jax>=0.13"'))
    problems = lock.stale(tmp_path)
    assert any("jax>=0.13" in p and "pins jax to" in p for p in problems), problems
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('grading-dependencies = ["jax",', 'grading-dependencies = ["nope", "jax",'))
    with pytest.raises(ValueError, match="grading-dependencies: nope not in project.dependencies"):
        lock.stale(tmp_path)


def test_lock_grader_checks_offline_and_names_a_missing_uv():
    runner = CliRunner()
    checked = runner.invoke(main, ["lock-grader", "--check"])
    assert checked.exit_code == 0, checked.output
    no_uv = runner.invoke(main, ["lock-grader"], env={"PATH": ""})  # fails before anything is written
    assert no_uv.exit_code == 1 and "uv: not found on PATH" in no_uv.output


def test_correct_submission_earns_full_marks_after_setup(bundle, tmp_path):
    # setup.sh with a stand-in uv: the Python and the lock it asks for, then run_autograder on what it made.
    root, tools = tmp_path / "autograder", tmp_path / "tools"
    tools.mkdir()
    (tools / "uv").write_text(FAKE_UV)
    (tools / "uv").chmod(0o755)
    grader_env = tmp_path / "grader-env"
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_ENV": str(grader_env), "AUTOGRADER_UV": str(tools / "uv"),
           "PYTHON_FOR_FAKE_UV": sys.executable}
    env.pop("AUTOGRADER_PYTHON", None)
    run_setup(unpack(bundle, root), env)
    python = lock.header_values((ROOT / lock.LOCKS / lock.GRADING_LOCK).read_text(), lock.PYTHON_LINE)[0]
    assert (tools / "uv.log").read_text().splitlines() == [
        f"venv --clear --python {python} {grader_env}/venv",
        f"pip sync --require-hashes --python {grader_env}/venv/bin/python requirements.lock"]
    shutil.rmtree(root / "source")  # run_bundle unpacks it again
    process, results = run_bundle(bundle, tmp_path, nested=True, env=env)  # uploaded as a repository: exercises/ inside
    assert process.returncode == 0, process.stderr[-3000:]
    total = sum(t["max_score"] for t in results["tests"])
    assert total > 0 and results["score"] == total and all(t["status"] == "passed" for t in results["tests"])
    assert f"Points {total:g}/{total:g}" in process.stdout
    # Gradescope's fields: Markdown feedback, each case's visibility and exercise, and what reproduces the grade.
    assert results["output_format"] == "md" and f"| `{EXERCISE}` | {total:g}/{total:g} |" in results["output"]
    assert {t["visibility"] for t in results["tests"]} <= {"visible", "hidden", "after_due_date", "after_published"}
    assert all(t["tags"] == [EXERCISE] and t["output_format"] == "text" for t in results["tests"])
    extra = results["extra_data"]
    assert extra["seed"] == 9 and extra["versions"] and extra["isolation"]


def test_run_autograder_writes_results_when_setup_went_wrong(bundle, tmp_path):
    root = unpack(bundle, tmp_path / "autograder")
    copy_with_edits(root / "submission")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_ENV": str(tmp_path / "never-set-up")}
    env.pop("AUTOGRADER_PYTHON", None)
    process = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=60)
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert process.returncode == 1 and "setup.sh did not finish" in process.stderr
    assert results["score"] == 0 and results["tests"] == [] and "not your fault" in results["output"]
    # A Python without the grader's packages: the grader stops at its imports, and the script still writes one.
    env["AUTOGRADER_PYTHON"] = shutil.which("python3", path="/usr/bin:/bin") or pytest.skip("no system python3")
    env["PYTHONNOUSERSITE"] = "1"
    process = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True, timeout=60)
    assert process.returncode == 1 and "ModuleNotFoundError" in process.stderr, process.stderr[-2000:]
    assert "exit status 1" in json.loads((root / "results" / "results.json").read_text())["output"]


@pytest.mark.skipif(not os.environ.get("COURSE_BASE_PYTHON"), reason="set COURSE_BASE_PYTHON to a Python 3.10 (network: PyPI)")
def test_setup_installs_the_lock_starting_from_python_3_10(bundle, tmp_path):
    # The image's python3 is COURSE_BASE_PYTHON; uv comes from bootstrap.lock and everything else from requirements.lock.
    image = tmp_path / "image-bin"
    image.mkdir()
    (image / "python3").symlink_to(os.environ["COURSE_BASE_PYTHON"])
    root, grader_env = tmp_path / "autograder", tmp_path / "grader-env"
    # This machine's settings for the index (certificates, proxies) pass; its Python and packages do not.
    env = {**{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "AUTOGRADER_PYTHON")},
           "PATH": f"{image}:/usr/bin:/bin", "HOME": str(tmp_path), "AUTOGRADER_ROOT": str(root), "AUTOGRADER_ENV": str(grader_env)}
    base = subprocess.run([str(image / "python3"), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    assert base.stdout.strip() == "(3, 10)", base
    setup = run_setup(unpack(bundle, root), env)
    python = lock.header_values((ROOT / lock.LOCKS / lock.GRADING_LOCK).read_text(), lock.PYTHON_LINE)[0]
    version = subprocess.run([str(grader_env / "venv" / "bin" / "python"), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True)
    assert version.stdout.strip() == python and "grader environment: jax" in setup.stdout
    frozen = subprocess.run([str(grader_env / "uv" / "bin" / "uv"), "pip", "freeze", "--python", str(grader_env / "venv" / "bin" / "python")],
                            capture_output=True, text=True, check=True).stdout
    assert lock.pins(frozen) == lock.pins((ROOT / lock.LOCKS / lock.GRADING_LOCK).read_text())
    shutil.rmtree(root / "source")
    process, results = run_bundle(bundle, tmp_path, env=env)
    assert process.returncode == 0 and results["score"] == sum(t["max_score"] for t in results["tests"]) > 0, process.stderr[-3000:]


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


def test_leaderboard_entries_reach_results_json_and_survive_the_score_file(tmp_path):
    from graders.results import gradescope, pytest_report, scores

    record = {"exercise": "training", "points": 2, "visibility": "visible", "status": "passed", "message": "", "hint": None,
              "forbidden": [], "detail": "", "values": "train_step", "requires_values": None,
              "leaderboard": [{"name": "final loss", "value": 1.25, "order": "asc"}]}
    report = {"tests": [{"nodeid": "graders/suites/test_training.py::test_x", "outcome": "passed", "call": {"duration": 0.1},
                         "user_properties": [{"grader": record}]}]}
    result = pytest_report.convert(report, submission="s", seed=3, exercises=["training"])
    document = gradescope.results(result, execution_time=1.0)
    jsonschema.validate(document, RESULTS_SCHEMA)
    assert document["leaderboard"] == [{"name": "final loss", "value": 1.25, "order": "asc"}]
    scores.write_json(tmp_path / "score.json", result.to_json())
    assert scores.load(tmp_path / "score.json") == result
    without = pytest_report.convert({"tests": [{**report["tests"][0], "user_properties": [{"grader": {**record, "leaderboard": []}}]}]},
                                    submission="s", seed=3, exercises=["training"])
    assert "leaderboard" not in gradescope.results(without, execution_time=1.0)
