"""The visible tests pass on the reference, fail cleanly on the stubs, and catch real mistakes."""

import pytest

from course import catalog
from course.check import run_visible_tests
from course.submission import repo_root

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


# One realistic mistake per exercise, all in one submission so that one pytest run checks them.
MISTAKES = {
    "jax_basics/jax_basics.py": ("    W, b = params[-1]\n    return x @ W + b", "    W, b = params[-1]\n    return jnp.tanh(x @ W + b)"),
    "positional_encoding/positional_encoding.py": (
        "jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(seq_len, d_model)",
        "jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)",
    ),
    "attention/attention.py": ("/ math.sqrt(query.shape[-1])", ""),
    "loss/loss.py": ("    targets = tokens[:, 1:]\n", "    targets = tokens[:, :-1]\n"),
}


def test_realistic_mistakes_fail_with_a_teaching_message(make_submission):
    results = {r.exercise.name: r for r in run_visible_tests(make_submission(MISTAKES))}
    for name, result in results.items():
        assert 0 < result.passed < result.total, f"{name}: {result.passed}/{result.total} passed"
        failed = [o for o in result.outcomes if o.outcome == "failed"]
        assert any("values differ from the expected ones" in o.message and "Largest error" in o.message for o in failed), failed
        assert not any("not implemented" in o.message for o in failed)
    assert "test_predict_last_layer_is_linear" in {o.nodeid.split("::")[1] for o in results["jax_basics"].outcomes if o.outcome == "failed"}


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
