"""The visible tests pass on the reference, fail cleanly on the stubs, and catch real mistakes."""

import pytest

from course import catalog
from course.check import run_visible_tests
from course.submission import repo_root
from tests.conftest import copy_with_edits

ROOT = repo_root()


def test_reference_passes_every_visible_test():
    results = run_visible_tests(ROOT / "reference")
    assert [r.exercise.name for r in results] == [e.name for e in catalog.EXERCISES]
    for result in results:
        assert result.total >= 5, f"{result.exercise.name}: only {result.total} visible tests"
        assert result.ok, f"{result.exercise.name}: {result.first_failure}"


def test_stubs_fail_every_visible_test_with_one_clear_message():
    for result in run_visible_tests(None):
        assert result.total > 0 and result.passed == 0, result.exercise.name
        for outcome in result.outcomes:
            assert outcome.outcome == "failed", outcome
            assert outcome.message.startswith("not implemented yet: implement "), outcome
            assert f"exercises/{result.exercise.relpath}" in outcome.message, outcome


# One realistic mistake per exercise, all in one submission so that one pytest run checks them:
# the edit, a visible test that must catch it, and a phrase its message must contain.
MISTAKES = {
    "jax_basics": (
        ("    W, b = params[-1]\n    return x @ W + b", "    W, b = params[-1]\n    return jnp.tanh(x @ W + b)"),
        "test_predict_last_layer_is_linear", "values differ from the expected ones",
    ),
    "positional_encoding": (
        ("jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(seq_len, d_model)",
         "jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)"),
        "test_sin_and_cos_are_interleaved", "column 1 (should be cos(p), right after sin(p))",
    ),
    "attention": (("/ math.sqrt(query.shape[-1])", ""), "test_attention_matches_reference[unmasked]", "Largest error"),
    "loss": (("    targets = tokens[:, 1:]\n", "    targets = tokens[:, :-1]\n"), "test_matches_reference[next_token]", "Largest error"),
    "transformer": (
        ("        x = x + self.attn(self.ln1(x), mask=mask)", "        x = self.attn(self.ln1(x), mask=mask)"),
        "test_outputs_and_gradients_match_reference[block]", "block output",
    ),
    "training": (("    optimizer.update(model, grads)\n", ""), "test_parameters_change", "parameters not updated"),
    "generation": (
        ("logits = logits.astype(jnp.float32) / temperature", "logits = logits.astype(jnp.float32) * temperature"),
        "test_samples_follow_the_distribution[2.0-None]", "are unlikely under softmax",
    ),
    # The encoder's padding mask dropped (the attention's mistake above changes its other outputs too).
    "encoder_decoder": (
        ("keys = None if source_mask is None else source_mask[:, None, None, :]", "keys = None"),
        "test_encoder_is_bidirectional_and_ignores_padding", "encoder outputs at real positions after changing padding",
    ),
}


def test_realistic_mistakes_fail_with_a_teaching_message(make_submission):
    edits = {f"{name}/{name}.py": edit for name, (edit, _, _) in MISTAKES.items()}
    results = {r.exercise.name: r for r in run_visible_tests(make_submission(edits))}
    assert results.keys() == MISTAKES.keys()
    for name, (_, test, phrase) in MISTAKES.items():
        result = results[name]
        assert 0 < result.passed < result.total, f"{name}: {result.passed}/{result.total} passed"
        failed = {o.nodeid.split("::")[1]: o.message for o in result.outcomes if o.outcome == "failed"}
        assert test in failed, f"{name}: {test} passed; failed: {sorted(failed)}"
        assert phrase in failed[test], f"{name}: {failed[test]}"
        assert not any("not implemented" in m for m in failed.values())


def test_a_syntax_error_is_reported_not_crashed_on(make_submission):
    broken = make_submission({"attention/attention.py": ("def causal_mask(", "def causal_mask((")})
    (result,) = run_visible_tests(broken, ["attention"])
    assert result.total >= 1 and result.passed == 0
    assert "SyntaxError" in result.first_failure.message or "invalid syntax" in result.first_failure.message


def test_a_submission_missing_an_exercise_fails_that_exercise_only(make_submission):
    partial = make_submission()
    (partial / "loss" / "loss.py").unlink()
    results = {r.exercise.name: r for r in run_visible_tests(partial, ["attention", "loss"])}
    assert results["attention"].ok
    assert not results["loss"].ok and "has no loss/loss.py" in results["loss"].first_failure.message


def test_unknown_exercise_is_a_key_error():
    with pytest.raises(KeyError, match="no exercise named 'nope'"):
        run_visible_tests(None, ["nope"])


def test_breakage_is_told_from_progress_by_pytest_json_report_s_fields(tmp_path):
    from course.check import is_broken
    from course.pytest_child import run_pytest

    (tmp_path / "test_kinds.py").write_text(
        "import pytest\n\n"
        "def test_passes():\n    pass\n\n"
        "def test_assert_progress():\n    assert 1 == 2\n\n"
        "def test_comparison_progress():\n    raise AssertionError('values differ from the expected ones')\n\n"
        "def test_did_not_raise_progress():\n    with pytest.raises(ValueError):\n        pass\n\n"
        "def test_stub_progress():\n    raise NotImplementedError('not implemented yet: implement f in exercises/x/x.py')\n\n"
        "def test_exception_broken():\n    raise ValueError('boom')\n\n"
        "@pytest.fixture\ndef bad():\n    raise KeyError('setup')\n\n"
        "def test_setup_broken(bad):\n    pass\n")
    # The visible tests' conftest makes a stub's report its message; the same hook here.
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n@pytest.hookimpl(wrapper=True)\ndef pytest_runtest_makereport(item, call):\n    report = yield\n"
        "    if report.failed and call.excinfo is not None and call.excinfo.errisinstance(NotImplementedError):\n"
        "        report.longrepr = str(call.excinfo.value)\n    return report\n")
    report, log = run_pytest(["--tb=auto", str(tmp_path)], cwd=tmp_path, timeout=120)
    assert report is not None, log
    verdicts = {t["nodeid"].split("::")[1]: is_broken(t) for t in report["tests"]}
    assert verdicts == {name: name.endswith("broken") for name in verdicts} and len(verdicts) == 7, verdicts


def test_compiles_once_counts_traces_not_model_calls(tmp_path):
    # Two model calls inside one compiled step are fine; a step that is not compiled runs the model every time.
    twice = copy_with_edits(tmp_path / "twice", {"training/training.py": (
        "        return next_token_loss(model(tokens), tokens)",
        "        model(tokens)\n        return next_token_loss(model(tokens), tokens)")})
    eager = copy_with_edits(tmp_path / "eager", {"training/training.py": ("@nnx.jit\n", "")})
    for submission, passes in ((twice, True), (eager, False)):
        (result,) = run_visible_tests(submission, ["training"])
        outcome = next(o for o in result.outcomes if o.nodeid.endswith("::test_train_step_compiles_once"))
        assert (outcome.outcome == "passed") == passes, outcome
    assert "steps [0, 1, 2]" in outcome.message and "nnx.jit" in outcome.message, outcome
