"""Catalogues of wrong and of correct-but-different submissions, graded by the hidden suites.

Each round edits a copy of ``reference/`` with one realistic mistake (or one
different correct implementation) per exercise and grades those exercises in
one run, so four mistakes cost one grading. A new exercise joins the rounds
with an entry of its own.
"""

import pytest

from tests.conftest import copy_with_edits

import graders

# One round: exercise -> (edit of its module, the case that must fail, the hint it must name or None).
MISTAKES = [
    {
        "jax_basics": (("    W, b = params[-1]\n    return x @ W + b", "    W, b = params[-1]\n    return jnp.tanh(x @ W + b)"),
                       "test_predict_with_gradients", "the last layer applies tanh"),
        "positional_encoding": (("jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(seq_len, d_model)",
                                 "jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)"),
                                "test_matches_reference[paper]", "concatenated instead of interleaved"),
        "attention": (("/ math.sqrt(query.shape[-1])", ""), "test_matches_reference_with_gradients[random]", "did you divide the scores by sqrt(d_k)"),
        "loss": (("    targets = tokens[:, 1:]\n    mask = None if pad_id is None else targets != pad_id\n"
                  "    return cross_entropy_loss(logits[:, :-1], targets, mask)",
                  "    targets = tokens[:, :-1]\n    mask = None if pad_id is None else targets != pad_id\n"
                  "    return cross_entropy_loss(logits[:, 1:], targets, mask)"),
                 "test_next_token_loss_with_gradient[pad_id_0]", "shifted the wrong way"),
    },
    {
        "jax_basics": (("return jnp.mean((predictions - targets) ** 2)", "return jnp.sum((predictions - targets) ** 2)"),
                       "test_mse_loss_with_gradients", "summed, not averaged"),
        "positional_encoding": (("jnp.arange(0, d_model, 2, dtype=jnp.float32) / d_model", "jnp.arange(0, d_model // 2, dtype=jnp.float32) / d_model"),
                                "test_matches_reference[custom]", "the frequencies are off"),
        "attention": (("jax.nn.softmax(scores.astype(jnp.float32), axis=-1)", "jax.nn.softmax(scores.astype(jnp.float32), axis=-2)"),
                      "test_matches_reference_with_gradients[none]", "softmax runs over the query axis"),
        "loss": (("    mask = None if pad_id is None else targets != pad_id\n", "    mask = None\n"),
                 "test_next_token_loss_with_gradient[pad_id_other]", "pad targets are counted"),
    },
    {
        "jax_basics": (("        x = jnp.tanh(x @ W + b)", "        x = jax.nn.relu(x @ W + b)"), "test_predict_with_gradients", "apply ReLU"),
        "positional_encoding": (("[jnp.sin(angles), jnp.cos(angles)]", "[jnp.cos(angles), jnp.sin(angles)]"),
                                "test_one_position", "sin and cos are swapped"),
        "attention": (("jnp.where(mask, ", "jnp.where(~mask, "),
                      "test_matches_reference_with_gradients[random]", "mask looks inverted"),
        "loss": (("return jnp.mean(nll)", "return jnp.sum(nll)"), "test_cross_entropy_with_gradient[none]", "summed, not averaged"),
    },
    {
        "jax_basics": (("@jax.jit\ndef loss_and_grad", "def loss_and_grad"), "test_loss_and_grad_is_jit_compiled", None),
        "positional_encoding": (("jnp.power(jnp.float32(base), exponents)", "jnp.power(jnp.float32(10000.0), exponents)"),
                                "test_matches_reference[custom]", "the base argument is not used"),
        "attention": (("jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))", "jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool), k=-1)"),
                      "test_causal_mask[random]", "a position must see itself"),
        "loss": (("jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)",
                  "logits.astype(jnp.float32) - jnp.log(jnp.sum(jnp.exp(logits.astype(jnp.float32)), axis=-1, keepdims=True))"),
                 "test_large_logits_stay_finite", "subtract the largest logit"),
    },
]
# Cases that must still pass despite the mistake of their round: each mistake costs only what it breaks.
STILL_PASSING = {
    (1, "loss"): "test_cross_entropy_with_gradient[bool_mask]",
    (3, "positional_encoding"): "test_matches_reference[paper]",
    (3, "jax_basics"): "test_loss_and_grad",
    (3, "loss"): "test_cross_entropy_with_gradient[none]",
}


def _edits(round_: dict) -> dict:
    return {f"{name}/{name}.py": edit for name, (edit, _, _) in round_.items()}


@pytest.mark.parametrize("number", range(len(MISTAKES)))
def test_each_mistake_loses_points_on_its_case_with_its_hint(tmp_path, number):
    round_ = MISTAKES[number]
    result = graders.grade(copy_with_edits(tmp_path / "wrong", _edits(round_)), exercises=list(round_), seed=100 + number)
    assert result.status == "ok", result.errors
    for exercise in result.exercises:
        _, case_name, hint = round_[exercise.name]
        cases = {c.name: c for c in exercise.cases}
        case = cases[case_name]
        assert case.status == "failed" and case.points == 0, (exercise.name, case)
        assert exercise.score < exercise.max_score
        if hint is not None:
            assert case.hint is not None and hint in case.hint, (exercise.name, case)
            assert hint in case.message
        if (number, exercise.name) in STILL_PASSING:
            assert cases[STILL_PASSING[number, exercise.name]].status == "passed", exercise


# Correct implementations written differently from the reference: each round must earn full marks.
CORRECT = [
    {
        "jax_basics/jax_basics.py": [
            ("        x = jnp.tanh(x @ W + b)", "        x = jnp.tanh(jnp.einsum('...i,ij->...j', x, W) + b)"),
            ("return jnp.mean((predictions - targets) ** 2)", "return jnp.square(predictions - targets).sum() / targets.size"),
            ("return jax.vmap(jax.grad(mse_loss), in_axes=(None, 0))(params, batch)",
             "one = lambda x, y: jax.grad(mse_loss)(params, (x[None], y[None]))\n    return jax.vmap(one)(*batch)"),
        ],
        "positional_encoding/positional_encoding.py": [
            ("angles = positions / jnp.power(jnp.float32(base), exponents)",
             "angles = positions * jnp.exp(-jnp.log(jnp.float32(base)) * exponents)"),
        ],
        "attention/attention.py": [
            ("scores = query @ jnp.swapaxes(key, -1, -2) / math.sqrt(query.shape[-1])",
             "scores = jnp.einsum('...qd,...kd->...qk', query, key) / math.sqrt(query.shape[-1])"),
            ("scores = jnp.where(mask, scores, -jnp.inf)", "scores = jnp.where(mask, scores, -1e9)"),
        ],
        "loss/loss.py": [
            ("log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)",
             "z = logits.astype(jnp.float32)\n    top = jax.lax.stop_gradient(z.max(-1, keepdims=True))\n"
             "    log_probs = z - top - jnp.log(jnp.sum(jnp.exp(z - top), axis=-1, keepdims=True))"),
        ],
    },
    {
        "jax_basics/jax_basics.py": [
            ("    return jax.value_and_grad(mse_loss)(params, batch)", "    return mse_loss(params, batch), jax.grad(mse_loss)(params, batch)"),
        ],
        "positional_encoding/positional_encoding.py": [
            ("return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(seq_len, d_model)",
             "table = jnp.zeros((seq_len, d_model), jnp.float32)\n    return table.at[:, 0::2].set(jnp.sin(angles)).at[:, 1::2].set(jnp.cos(angles))"),
        ],
        "attention/attention.py": [
            ("    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1)\n",
             "    scores = scores.astype(jnp.float32)\n    e = jnp.exp(scores - scores.max(axis=-1, keepdims=True))\n"
             "    if mask is not None:\n        e = e * mask\n    weights = e / e.sum(axis=-1, keepdims=True)\n"),
            ("scores = jnp.where(mask, scores, -jnp.inf)", "scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)"),
        ],
        "loss/loss.py": [
            ("nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]",
             "nll = -jnp.sum(jax.nn.one_hot(targets, logits.shape[-1]) * log_probs, axis=-1)"),
            ("return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)",
             "total = jnp.sum(jnp.where(weights != 0, nll * weights, 0.0))\n    return total / jnp.maximum(jnp.sum(weights), 1.0)"),
        ],
    },
]


@pytest.mark.parametrize("number", range(len(CORRECT)))
def test_correct_but_different_submissions_earn_full_marks(tmp_path, number):
    target = copy_with_edits(tmp_path / "different")
    for relpath, edits in CORRECT[number].items():
        path = target / relpath
        text = path.read_text()
        for old, new in edits:
            assert old in text, f"{relpath} has no {old!r}"
            text = text.replace(old, new)
        path.write_text(text)
    result = graders.grade(target, exercises=[relpath.split("/")[0] for relpath in CORRECT[number]], seed=200 + number)
    failures = [(c.exercise, c.name, c.message) for e in result.exercises for c in e.cases if c.status != "passed"]
    assert result.status == "ok" and not failures, failures
    assert result.score == result.max_score
