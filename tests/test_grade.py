"""``course grade`` end to end: the reference earns full marks, the stubs zero, a seed reproduces a grade."""

import json
import tempfile
import zipfile

import pytest
from click.testing import CliRunner

from course.cli import main
from course.submission import repo_root
from tests.conftest import Mutation, assert_valid_score_files, copy_with_edits

import graders

ROOT = repo_root()


def test_reference_earns_full_marks_through_the_cli(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["grade", str(ROOT / "reference"), "--out", str(out), "--seed", "11", "--points-line"])
    assert result.exit_code == 0, result.output
    score = assert_valid_score_files(out, seed=11)
    assert score.status == "ok" and score.max_score > 0 and score.score == score.max_score
    assert [e.name for e in score.exercises] == graders.graded_exercises()
    assert all(len(e.cases) >= 5 for e in score.exercises)
    assert f"Points {score.max_score:g}/{score.max_score:g}" in result.output
    assert score.device["worker"] and score.versions["jax"] and score.timings["total"] > 0
    assert all(c.message == "" and c.hint is None for e in score.exercises for c in e.cases)


def test_stubs_earn_zero(tmp_path):
    result = graders.grade(ROOT / "exercises", out=tmp_path, seed=3)
    score = assert_valid_score_files(tmp_path, seed=3)
    assert result.status == "ok" and score.score == 0 and score.max_score > 0
    for case in (c for e in score.exercises for c in e.cases):
        assert case.status == "failed" and "not implemented yet: implement" in case.message, case


def test_the_seed_reproduces_a_grade_and_changes_the_inputs(tmp_path):
    wrong = copy_with_edits(tmp_path / "wrong", {"positional_encoding/positional_encoding.py": ("jnp.float32(base)", "jnp.float32(base * 1.1)")})

    def messages(seed):
        result = graders.grade(wrong, exercises=["positional_encoding"], seed=seed)
        return [(c.name, c.status, c.message) for c in result.exercises[0].cases]

    first = messages(5)
    assert any(status == "failed" for _, status, _ in first)
    assert messages(5) == first
    assert messages(6) != first  # other sizes, other errors


def test_bad_arguments_are_named(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["grade", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "SUBMISSION" in missing.output and "does not exist" in missing.output
    unknown = runner.invoke(main, ["grade", "-e", "nope"])
    assert unknown.exit_code == 2 and "--exercise" in unknown.output
    seed = runner.invoke(main, ["grade", "--seed", "-1"])
    assert seed.exit_code == 2 and "--seed" in seed.output
    with pytest.raises(ValueError, match="seed"):
        graders.grade(ROOT / "reference", seed=2**32)
    with pytest.raises(ValueError, match="limits.call_seconds"):
        graders.Limits(call_seconds=0)


def test_a_grader_bug_is_reported_as_such(tmp_path, monkeypatch):
    # A suite that raises an unexpected error is the grader's fault: status grader_error, and the CLI exits 1.
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "test_loss.py").write_text(
        "import pytest\n\n@pytest.mark.points(2)\n@pytest.mark.values('cross_entropy_loss')\n"
        "def test_buggy(student):\n    raise KeyError('a bug in the suite')\n"
    )
    monkeypatch.setattr("graders.engine.grading.SUITES", suites)
    result = graders.grade(ROOT / "reference", exercises=["loss"], out=tmp_path / "out", seed=1)
    assert result.status == "grader_error" and any("a bug in the suite" in e for e in result.errors)
    (case,) = result.exercises[0].cases
    assert case.status == "grader_error" and "not your fault" in case.message and "a bug in the suite" not in case.message
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "a bug in the suite" not in json.dumps(results)  # students never see the suite's internals
    assert_valid_score_files(tmp_path / "out", seed=1)


def test_a_broken_submission_scores_zero_with_the_reason(tmp_path):
    broken = copy_with_edits(tmp_path / "broken", {"attention/attention.py": ("def causal_mask(", "def causal_mask((")})
    (broken / "loss" / "loss.py").unlink()
    result = graders.grade(broken, exercises=["attention", "loss"], out=tmp_path / "out", seed=2)
    assert result.status == "ok" and result.score == 0
    attention, loss = result.exercises
    assert all("SyntaxError" in c.message and "attention/attention.py" in c.message for c in attention.cases)
    assert all("the submission has no loss" in c.message for c in loss.cases)
    assert_valid_score_files(tmp_path / "out", seed=2)


def test_a_zip_or_the_reference_is_graded_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the zip is unpacked, to see it cleaned up
    (tmp_path / "tmp").mkdir()
    with zipfile.ZipFile("alice.zip", "w") as archive:
        for path in (ROOT / "reference").rglob("*.py"):
            archive.write(path, f"alice/{path.relative_to(ROOT / 'reference')}")
    runner = CliRunner()
    for submission in ("reference", "alice.zip"):
        result = runner.invoke(main, ["grade", submission, "-e", "positional_encoding", "--out", submission + ".out", "--seed", "4"])
        assert result.exit_code == 0, result.output
        score = assert_valid_score_files(tmp_path / (submission + ".out"), seed=4)
        assert score.status == "ok" and score.max_score > 0 and score.score == score.max_score, result.output
    assert not list((tmp_path / "tmp").iterdir())
    (tmp_path / "bad.zip").write_text("not a zip")
    bad = runner.invoke(main, ["grade", "bad.zip"])
    assert bad.exit_code == 2 and "SUBMISSION" in bad.output and "not a readable zip file" in bad.output, bad.output


def test_an_answer_in_another_dtype_fails_on_its_dtype_not_at_its_tolerance(tmp_path):
    # Outputs 2% off, in bfloat16 for float32 inputs (within bfloat16's tolerance, far outside float32's) and in
    # float32 for bfloat16 inputs: the tolerance follows the expected dtype, and the dtype is checked first.
    swapped = Mutation("scaled_dot_product_attention", "return weights @ value, weights", """
        wrong = jnp.bfloat16 if query.dtype == jnp.float32 else jnp.float32
        return (1.02 * (weights @ value)).astype(wrong), weights.astype(wrong)
        """)
    target = copy_with_edits(tmp_path / "swapped", {"attention/attention.py": swapped})
    cases = {c.name: c for c in graders.grade(target, exercises=["attention"], seed=17).exercises[0].cases}
    values = [c for name, c in cases.items() if not name.startswith(("test_causal_mask", "test_mismatched", "test_bfloat16"))]
    assert len(values) >= 8 and all(c.points == 0 for c in values), [(c.name, c.points) for c in values]
    assert all(c.message.endswith("expected dtype float32, got bfloat16") for c in values), [c.message for c in values]
    bfloat16 = cases["test_bfloat16_inputs_give_bfloat16_outputs"]
    assert bfloat16.points == 0 and bfloat16.message == "bfloat16 output: expected dtype bfloat16, got float32"


# Ordinary slips in what a submission returns: each must fail its cases with a message, never crash the suite's code.
SLIPS = {
    # token ids as floats from both functions (the loop casts them back for its int32 buffer)
    "generation": [
        Mutation("sample_next_token", "return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)",
                 "return jax.random.categorical(key, logits, axis=-1).astype(jnp.float32)"),
        Mutation("_generate.step", "token = sample_next_token(logits, jax.random.fold_in(key, t), temperature, top_k)",
                 "token = sample_next_token(logits, jax.random.fold_in(key, t), temperature, top_k).astype(jnp.int32)"),
        Mutation("_generate", "return jax.lax.fori_loop(prompt_len, total, step, buffer)",
                 "return jax.lax.fori_loop(prompt_len, total, step, buffer).astype(jnp.float32)"),
    ],
    # the weights forgotten: one array where (output, weights) belongs
    "attention": [Mutation("scaled_dot_product_attention", "return weights @ value, weights", "return weights @ value")],
    # an output projection of the wrong width
    "transformer": [Mutation("MultiHeadAttention.__init__", "self.out = nnx.Linear(d_model, d_model, rngs=rngs)",
                             "self.out = nnx.Linear(d_model, d_model // num_heads, rngs=rngs)")],
}


def test_slips_in_returned_arrays_fail_with_messages_not_grader_errors(tmp_path):
    # The suites index with token ids, count them and unpack outputs: a wrong dtype, shape or count is the student's.
    target = copy_with_edits(tmp_path / "slips", {f"{name}/{name}.py": edits for name, edits in SLIPS.items()})
    result = graders.grade(target, exercises=list(SLIPS), seed=5)
    assert result.status == "ok", result.errors
    cases = {(c.exercise, c.name): c for e in result.exercises for c in e.cases}
    assert not [name for name, c in cases.items() if c.status == "grader_error"]
    float_ids = [c for (exercise, name), c in cases.items() if exercise == "generation" and name.startswith(
        ("test_samples_only_from_the_top_k", "test_samples_follow_the_distribution", "test_generate_samples_follow_the_model"))]
    assert len(float_ids) == 6 and all(c.message.endswith("expected dtype int32, got float32") for c in float_ids), float_ids
    weights = cases["attention", "test_masked_weights_are_exactly_zero"]
    assert weights.status == "failed" and weights.message.startswith("scaled_dot_product_attention: expected a tuple of 2 arrays")
    assert "parameter structure differs" in cases["transformer", "test_multi_head_attention_with_gradients[self]"].message
