"""PrairieLearn's external grader (``python -m graders.prairielearn``) in a temporary folder laid out like /grade."""

import json
import os
import subprocess
import sys

import jsonschema

from tests.conftest import ROOT

EXERCISE = "positional_encoding"
# PrairieLearn's external grading results (results.json), the fields this grader writes.
RESULTS_SCHEMA = {
    "type": "object",
    "required": ["gradable", "score", "message", "tests"],
    "properties": {
        "gradable": {"type": "boolean"}, "score": {"type": "number", "minimum": 0, "maximum": 1}, "message": {"type": "string"},
        "tests": {"type": "array", "items": {
            "type": "object", "required": ["name", "points", "max_points"],
            "properties": {"name": {"type": "string"}, "description": {"type": "string"}, "points": {"type": "number"},
                           "max_points": {"type": "number"}, "message": {"type": "string"}}}},
    },
}


def grade_folder(root, *args):
    """Runs the grader on ``root`` (laid out like /grade); returns (process, results.json)."""
    process = subprocess.run([sys.executable, "-m", "graders.prairielearn", "--root", str(root), *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    return process, results


def test_flat_upload_is_graded_with_the_questions_params(tmp_path):
    # The module uploaded as a flat file, and the exercise and seed from the question's data.json.
    root = tmp_path / "grade"
    (root / "student").mkdir(parents=True)
    (root / "student" / f"{EXERCISE}.py").write_text((ROOT / "reference" / EXERCISE / f"{EXERCISE}.py").read_text())
    (root / "data").mkdir()
    (root / "data" / "data.json").write_text(json.dumps({"params": {"exercises": [EXERCISE], "seed": 5}}))
    process, results = grade_folder(root)
    assert process.returncode == 0, process.stderr[-3000:]
    assert results["gradable"] and results["score"] == 1.0 and results["tests"]
    assert all(t["points"] == t["max_points"] > 0 and t["description"] == EXERCISE for t in results["tests"])
    assert f"{EXERCISE}: " in results["message"]


def test_an_upload_without_exercise_modules_is_not_gradable(tmp_path):
    root = tmp_path / "grade"
    (root / "student").mkdir(parents=True)
    (root / "student" / "notes.txt").write_text("no code")
    process, results = grade_folder(root, "-e", EXERCISE)
    assert process.returncode == 0, process.stderr[-3000:]
    why = "no exercise module found (expected e.g. attention.py or attention/attention.py)"
    assert results == {"gradable": False, "score": 0.0, "tests": [], "format_errors": why,
                       "message": f"Your submission could not be graded: {why}"}


def test_hidden_cases_count_but_are_not_listed_and_grader_errors_do_not_count():
    from graders import prairielearn
    from graders.results.scores import Case, CaseStatus, ExerciseScore, GradingResult, RunStatus

    cases = (Case("loss", "test_a", 2, 2, CaseStatus.PASSED),
             Case("loss", "test_b", 0, 2, CaseStatus.FAILED, message="wrong", hint="summed, not averaged"),
             Case("loss", "test_c", 0, 4, CaseStatus.FAILED, visibility="hidden"))
    result = GradingResult(submission="s", seed=1, exercises=(ExerciseScore("loss", cases),))
    document = prairielearn.results(result)
    jsonschema.validate(document, RESULTS_SCHEMA)
    assert document["gradable"] and document["score"] == 0.25
    assert [t["name"] for t in document["tests"]] == ["loss: test_a", "loss: test_b"]
    assert document["tests"][1]["message"] == "wrong\nHint: summed, not averaged"
    long = prairielearn.results(GradingResult(submission="s", seed=1, exercises=(
        ExerciseScore("loss", (Case("loss", "test_d", 0, 1, CaseStatus.FAILED, message="x" * 10**6),)),)))
    assert len(long["tests"][0]["message"]) == prairielearn.MAX_MESSAGE
    assert "1 more cases are graded but not listed" in document["message"]
    failed = prairielearn.results(GradingResult(submission="s", seed=1, exercises=(), status=RunStatus.GRADER_ERROR))
    assert not failed["gradable"] and failed["score"] == 0 and "not your fault" in failed["message"]
