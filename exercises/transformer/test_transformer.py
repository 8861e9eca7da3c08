"""Visible tests for exercises/transformer: run them with ``pytest exercises/transformer``.

Each test builds your module, loads the fixture's weights into it by name
(``query.kernel``, ``attn.out.bias``, ...), and compares outputs and gradients.
Your modules run compiled (``nnx.jit``), as in a model: each check is one
program, not one per operation, which keeps a rerun fast.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course.params import abstract_module, arrays_under, module_vjp, module_with_params, param_shapes
from course.testing import assert_close, load_fixtures, stored_mistakes
from exercises.transformer.transformer import DecoderBlock, FeedForward, MultiHeadAttention

FX = load_fixtures(__file__)
# jax.device_put, unlike jnp.asarray, copies a NumPy array to the device without compiling a program.
X, CONTEXT, COTANGENT = (jax.device_put(FX[n]) for n in ("x", "context", "cotangent"))
D_MODEL, HEADS, D_FF, T = 16, 4, 24, 5
CAUSAL = jax.device_put(np.tril(np.ones((T, T), bool)))
# Added to a position's input; not a constant, which the block's LayerNorm would remove.
CHANGE = np.linspace(-10.0, 10.0, D_MODEL, dtype=np.float32)

CASES = {
    "mha_self": (lambda: MultiHeadAttention(D_MODEL, HEADS, rngs=nnx.Rngs(0)), lambda m, x: m(x)),
    "mha_causal": (lambda: MultiHeadAttention(D_MODEL, HEADS, rngs=nnx.Rngs(0)), lambda m, x: m(x, mask=CAUSAL)),
    "mha_cross": (lambda: MultiHeadAttention(D_MODEL, HEADS, rngs=nnx.Rngs(0)), lambda m, x: m(x, context=CONTEXT)),
    "ffn": (lambda: FeedForward(D_MODEL, D_FF, rngs=nnx.Rngs(0)), lambda m, x: m(x)),
    "block": (lambda: DecoderBlock(D_MODEL, HEADS, D_FF, rngs=nnx.Rngs(0)), lambda m, x: m(x, CAUSAL)),
}
# Each case's call compiled once (per input shape and dtype) and shared by the tests.
FORWARD = {case: nnx.jit(call) for case, (_, call) in CASES.items()}


@functools.cache
def abstract(case):
    """Your module for ``case``, built abstractly: shapes and dtypes, no values, nothing computed."""
    return abstract_module(CASES[case][0])


@functools.cache  # built once per case: the tests only call the modules
def build(case):
    """Your module for ``case`` with the fixture's weights loaded (its random initial weights are never computed)."""
    return module_with_params(CASES[case][0], arrays_under(FX, f"{case}.params."), abstract=abstract(case))


@pytest.mark.parametrize("case", list(CASES))
def test_parameter_names_and_shapes(case):
    expected = {k: v.shape for k, v in arrays_under(FX, f"{case}.params.").items()}
    actual = param_shapes(abstract(case))
    assert actual == expected, f"parameters of {case}: expected {sorted(expected.items())}, got {sorted(actual.items())}"


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_and_gradients_match_reference(case):
    output, d_x, d_params = module_vjp(build(case), CASES[case][1], X, COTANGENT)
    assert_close(output, FX[f"{case}.output"], what=f"{case} output", mistakes=stored_mistakes(FX, f"{case}.output"))
    assert_close(d_x, FX[f"{case}.grad_x"], what=f"{case} gradient with respect to x")
    for name, grad in d_params.items():
        assert_close(grad, FX[f"{case}.grad_params.{name}"], what=f"{case} gradient with respect to {name}")


def test_heads_must_divide_d_model():
    with pytest.raises(ValueError):
        abstract_module(lambda: MultiHeadAttention(10, 4, rngs=nnx.Rngs(0)))  # abstractly, like every module here


def test_causal_block_ignores_the_future():
    # Compared with your block's own outputs, not the reference's: only a look at the future fails here.
    changed = FX["x"].copy()
    changed[:, 3:] += CHANGE
    block = build("block")
    out, out_changed = (np.asarray(FORWARD["block"](block, x)) for x in (X, jax.device_put(changed)))
    assert_close(out_changed[:, :3], out[:, :3], what="block outputs at positions 0-2 after changing positions 3-4 "
                 "(compared with your block's outputs before the change)")


def test_one_head_is_plain_attention_between_projections():
    # With one head there is nothing to split: out(softmax(q k^T / sqrt(d)) v).
    @nnx.jit
    def module_and_plain_attention(module, x):
        q, k, v = module.query(x), module.key(x), module.value(x)
        weights = jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2) / np.sqrt(D_MODEL), axis=-1)
        return module(x), module.out(weights @ v)

    # Any weights will do: those of mha_self, which has the same parameters.
    one_head = module_with_params(lambda: MultiHeadAttention(D_MODEL, 1, rngs=nnx.Rngs(0)), arrays_under(FX, "mha_self.params."))
    actual, expected = module_and_plain_attention(one_head, X)
    assert_close(actual, expected, what="MultiHeadAttention with num_heads=1")


def test_leading_batch_dimensions():
    stacked = jax.device_put(np.stack([FX["x"]] * 2))  # [2, B, T, d_model]
    mistakes = {hint: np.stack([wrong] * 2) for hint, wrong in stored_mistakes(FX, "mha_causal.output").items()}
    assert_close(FORWARD["mha_causal"](build("mha_causal"), stacked), np.stack([FX["mha_causal.output"]] * 2), what="MultiHeadAttention on inputs [2, B, T, d_model]",
                 mistakes=mistakes)


def test_bfloat16_inputs():
    out = FORWARD["block"](build("block"), jax.device_put(FX["x"].astype(jnp.bfloat16)))
    assert_close(np.asarray(out).astype(np.float32), FX["block.output"], rtol=5e-2, atol=5e-2, what="DecoderBlock on bfloat16 inputs",
                 mistakes=stored_mistakes(FX, "block.output"))
