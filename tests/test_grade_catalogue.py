"""Catalogues of wrong and of correct-but-different submissions, graded by the hidden suites.

Each round edits a copy of ``reference/`` with one realistic mistake (or one
different correct implementation) per exercise and grades those exercises in
one run, so several mistakes cost one grading.
"""

import pytest

from tests.conftest import copy_with_edits

import graders

# Heads split as [..., H, T, d_head] by a plain reshape, and merged back the same way: one edit of the whole span.
MHA_SPAN_OLD = """\
            y = y.reshape(*y.shape[:-1], self.num_heads, -1)  # [..., T, H, d_head]
            return jnp.swapaxes(y, -2, -3)  # [..., H, T, d_head]

        q = split_heads(self.query(x))
        k = split_heads(self.key(context))
        v = split_heads(self.value(context))
        heads, _ = scaled_dot_product_attention(q, k, v, mask)  # [..., H, T_q, d_head]
        heads = jnp.swapaxes(heads, -2, -3)  # [..., T_q, H, d_head]
        return self.out(heads.reshape(*heads.shape[:-2], -1))  # [..., T_q, d_model]"""
MHA_SPAN_WRONG = """\
            return y.reshape(*y.shape[:-2], self.num_heads, y.shape[-2], -1)

        q = split_heads(self.query(x))
        k = split_heads(self.key(context))
        v = split_heads(self.value(context))
        heads, _ = scaled_dot_product_attention(q, k, v, mask)  # [..., H, T_q, d_head]
        return self.out(heads.reshape(*heads.shape[:-3], heads.shape[-2], -1))"""

# One round: exercise -> (edit of its module, the case that must fail, the hint it must name or None).
# A round grades only its exercises. The transformer builds on the submission's attention and the
# training step on its loss, so their mistakes have rounds of their own (4 to 7), where attention and
# loss are the reference's: a mistake there would change what the transformer and training cases see.
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
        "generation": (("logits = logits.astype(jnp.float32) / temperature",
                        "logits = jnp.log(jax.nn.softmax(logits.astype(jnp.float32)) / temperature)"),
                       "test_samples_follow_the_distribution[temperature_0.6]", "the temperature has no effect"),
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
        "generation": (("jnp.where(logits >= kth_largest, logits, -jnp.inf)", "jnp.where(logits > kth_largest, logits, -jnp.inf)"),
                       "test_top_k_one_is_argmax", None),
    },
    {
        "jax_basics": (("        x = jnp.tanh(x @ W + b)", "        x = jax.nn.relu(x @ W + b)"), "test_predict_with_gradients", "apply ReLU"),
        "positional_encoding": (("[jnp.sin(angles), jnp.cos(angles)]", "[jnp.cos(angles), jnp.sin(angles)]"),
                                "test_one_position", "sin and cos are swapped"),
        "attention": (("jnp.where(mask, ", "jnp.where(~mask, "),
                      "test_matches_reference_with_gradients[random]", "mask looks inverted"),
        "loss": (("return jnp.mean(nll)", "return jnp.sum(nll)"), "test_cross_entropy_with_gradient[none]", "summed, not averaged"),
        "generation": (("start = jnp.clip(t - window, 0, total - window)", "start = 0"),
                       "test_greedy_generation_is_exact[window_slides]", None),
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
        "generation": (("    return jax.lax.fori_loop(prompt_len, total, step, buffer)",
                        "    for t in range(prompt_len, total):  # unrolled: the model is traced once per token\n"
                        "        buffer = step(t, buffer)\n    return buffer"),
                       "test_model_is_traced_a_bounded_number_of_times", None),
    },
    {
        "transformer": (("        x = x + self.attn(self.ln1(x), mask=mask)\n        return x + self.ffn(self.ln2(x))",
                         "        x = self.ln1(x + self.attn(x, mask=mask))\n        return self.ln2(x + self.ffn(x))"),
                        "test_decoder_block_with_gradients[causal]", "looks like post-norm"),
        "training": (("    optimizer.update(model, grads)\n", ""),
                     "test_train_step_updates_like_the_reference[adam]", "the parameters did not change"),
    },
    {
        "transformer": ((MHA_SPAN_OLD, MHA_SPAN_WRONG), "test_multi_head_attention_with_gradients[self]",
                        "heads look split in the wrong order"),
        "training": (("    optimizer.update(model, grads)\n    return loss", "    optimizer.update(model, grads)\n    return loss_fn(model)"),
                     "test_train_step_updates_like_the_reference[sgd]", "the loss returned is the loss after the update"),
    },
    {
        "transformer": (("self.down(jax.nn.gelu(self.up(x)))", "self.down(jax.nn.relu(self.up(x)))"),
                        "test_feed_forward_with_gradients", "looks like relu"),
        "training": (("@nnx.jit\ndef train_step", "def train_step"), "test_train_step_is_compiled", None),
    },
    {
        "transformer": (("        x = x + self.attn(self.ln1(x), mask=mask)\n", "        x = self.attn(self.ln1(x), mask=mask)\n"),
                        "test_decoder_block_with_gradients[none]", "residual connection around the attention is missing"),
        "training": (('    if "data" not in mesh.axis_names:\n', '    if False:  # the axis is not checked\n'),
                     "test_shard_batch_rejects_bad_meshes", None),
    },
    {
        "transformer": (("        if num_heads <= 0 or d_model % num_heads:\n", "        if False:  # d_model is not checked\n"),
                        "test_num_heads_must_divide_d_model", None),
    },
]
# Cases that must still pass despite the mistake of their round: each mistake costs only what it breaks.
STILL_PASSING = {
    (1, "loss"): "test_cross_entropy_with_gradient[bool_mask]",
    (3, "positional_encoding"): "test_matches_reference[paper]",
    (3, "jax_basics"): "test_loss_and_grad",
    (3, "loss"): "test_cross_entropy_with_gradient[none]",
    (4, "transformer"): "test_multi_head_attention_with_gradients[causal]",
    (6, "transformer"): "test_multi_head_attention_with_gradients[cross]",
    (0, "generation"): "test_samples_follow_the_distribution[top_k]",
    (2, "generation"): "test_greedy_generation_is_exact[short_prompt]",
    (6, "training"): "test_train_step_updates_like_the_reference[adam]",
    (7, "training"): "test_shard_batch_places_rows_on_the_data_axis",
    (8, "transformer"): "test_decoder_block_with_gradients[causal]",
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
        "transformer/transformer.py": [
            ("        heads = jnp.swapaxes(heads, -2, -3)  # [..., T_q, H, d_head]\n"
             "        return self.out(heads.reshape(*heads.shape[:-2], -1))",
             "        return self.out(jnp.concatenate([heads[..., h, :, :] for h in range(self.num_heads)], axis=-1))"),
            ("        x = x + self.attn(self.ln1(x), mask=mask)", "        x = self.attn(self.ln1(x), mask=mask) + x"),
        ],
        "generation/generation.py": [
            ("    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)",
             "    gumbel = jax.random.gumbel(key, logits.shape)  # the Gumbel-max trick\n"
             "    return jnp.argmax(logits + gumbel, axis=-1).astype(jnp.int32)"),
            ("kth_largest = jax.lax.top_k(logits, top_k)[0][..., -1:]", "kth_largest = jnp.sort(logits, axis=-1)[..., -top_k:][..., :1]"),
        ],
        "training/training.py": [
            ("    loss, grads = nnx.value_and_grad(loss_fn)(model)", "    grads = nnx.grad(loss_fn)(model)\n    loss = loss_fn(model)"),
            ('NamedSharding(mesh, P("data"))', 'NamedSharding(mesh, P("data", *[None] * (tokens.ndim - 1)))'),
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
        "transformer/transformer.py": [
            ("            y = y.reshape(*y.shape[:-1], self.num_heads, -1)  # [..., T, H, d_head]\n"
             "            return jnp.swapaxes(y, -2, -3)  # [..., H, T, d_head]",
             "            d = y.shape[-1] // self.num_heads\n"
             "            return jnp.stack([y[..., h * d:(h + 1) * d] for h in range(self.num_heads)], axis=-3)"),
            ("return self.down(jax.nn.gelu(self.up(x)))",
             "h = self.up(x)\n        return self.down(0.5 * h * (1 + jnp.tanh(jnp.sqrt(2 / jnp.pi) * (h + 0.044715 * h**3))))"),
        ],
        "generation/generation.py": [
            ("    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)",
             "    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)  # inverse-CDF sampling\n"
             "    u = jax.random.uniform(key, (*logits.shape[:-1], 1))\n"
             "    return jnp.minimum(jnp.sum(cdf < u, axis=-1), logits.shape[-1] - 1).astype(jnp.int32)"),
            ("    return jax.lax.fori_loop(prompt_len, total, step, buffer)",
             "    buffer, _ = jax.lax.scan(lambda b, t: (step(t, b), None), buffer, jnp.arange(prompt_len, total))\n"
             "    return buffer"),
        ],
        "training/training.py": [
            ("    loss, grads = nnx.value_and_grad(loss_fn)(model)",
             "    (loss, _), grads = nnx.value_and_grad(lambda m: (loss_fn(m), None), has_aux=True)(model)"),
            ('    if "data" not in mesh.axis_names:', '    if "data" not in mesh.shape:'),
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
