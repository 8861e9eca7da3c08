"""Visible tests for exercises/transformer: run them with ``pytest exercises/transformer``.

Each test builds your module, loads the fixture's weights into it by name
(``query.kernel``, ``attn.out.bias``, ...), and compares outputs and gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course.params import arrays_under, load_param_arrays, module_vjp, param_arrays
from course.testing import assert_close, load_fixtures, stored_mistakes
from exercises.transformer.transformer import DecoderBlock, FeedForward, MultiHeadAttention

FX = load_fixtures(__file__)
X, CONTEXT, COTANGENT = (jnp.asarray(FX[n]) for n in ("x", "context", "cotangent"))
D_MODEL, HEADS, D_FF, T = 16, 4, 24, 5
CAUSAL = jnp.tril(jnp.ones((T, T), bool))

CASES = {
    "mha_self": (lambda: MultiHeadAttention(D_MODEL, HEADS, rngs=nnx.Rngs(0)), lambda m, x: m(x)),
    "mha_causal": (lambda: MultiHeadAttention(D_MODEL, HEADS, rngs=nnx.Rngs(0)), lambda m, x: m(x, mask=CAUSAL)),
    "mha_cross": (lambda: MultiHeadAttention(D_MODEL, HEADS, rngs=nnx.Rngs(0)), lambda m, x: m(x, context=CONTEXT)),
    "ffn": (lambda: FeedForward(D_MODEL, D_FF, rngs=nnx.Rngs(0)), lambda m, x: m(x)),
    "block": (lambda: DecoderBlock(D_MODEL, HEADS, D_FF, rngs=nnx.Rngs(0)), lambda m, x: m(x, CAUSAL)),
}


def build(case):
    """Your module for ``case`` with the fixture's weights loaded."""
    module = CASES[case][0]()
    load_param_arrays(module, arrays_under(FX, f"{case}.params."))
    return module


@pytest.mark.parametrize("case", list(CASES))
def test_parameter_names_and_shapes(case):
    expected = {k: v.shape for k, v in arrays_under(FX, f"{case}.params.").items()}
    actual = {k: v.shape for k, v in param_arrays(CASES[case][0]()).items()}
    assert actual == expected, f"parameters of {case}: expected {sorted(expected.items())}, got {sorted(actual.items())}"


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_and_gradients_match_reference(case):
    # nnx.jit: the forward and backward passes compile as a few programs, not one per operation.
    output, d_x, d_params = module_vjp(build(case), nnx.jit(CASES[case][1]), X, COTANGENT)
    assert_close(output, FX[f"{case}.output"], what=f"{case} output", mistakes=stored_mistakes(FX, f"{case}.output"))
    assert_close(d_x, FX[f"{case}.grad_x"], what=f"{case} gradient with respect to x")
    for name, grad in d_params.items():
        assert_close(grad, FX[f"{case}.grad_params.{name}"], what=f"{case} gradient with respect to {name}")


def test_heads_must_divide_d_model():
    with pytest.raises(ValueError):
        MultiHeadAttention(10, 4, rngs=nnx.Rngs(0))


def test_causal_block_ignores_the_future():
    block = build("block")
    changed = X.at[:, 3:].add(10.0)
    assert_close(block(changed, CAUSAL)[:, :3], FX["block.output"][:, :3], what="block outputs at positions 0-2 after changing positions 3-4")


def test_one_head_is_plain_attention_between_projections():
    # With one head there is nothing to split: out(softmax(q k^T / sqrt(d)) v).
    module = MultiHeadAttention(D_MODEL, 1, rngs=nnx.Rngs(0))
    q, k, v = module.query(X), module.key(X), module.value(X)
    weights = jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2) / np.sqrt(D_MODEL), axis=-1)
    assert_close(module(X), module.out(weights @ v), what="MultiHeadAttention with num_heads=1")


def test_leading_batch_dimensions():
    module = build("mha_causal")
    stacked = jnp.stack([X, X])  # [2, B, T, d_model]
    mistakes = {hint: np.stack([wrong] * 2) for hint, wrong in stored_mistakes(FX, "mha_causal.output").items()}
    assert_close(module(stacked, mask=CAUSAL), np.stack([FX["mha_causal.output"]] * 2), what="MultiHeadAttention on inputs [2, B, T, d_model]",
                 mistakes=mistakes)


def test_bfloat16_inputs():
    out = build("block")(X.astype(jnp.bfloat16), CAUSAL)
    assert_close(out.astype(jnp.float32), FX["block.output"], rtol=5e-2, atol=5e-2, what="DecoderBlock on bfloat16 inputs",
                 mistakes=stored_mistakes(FX, "block.output"))
