"""Visible tests for exercises/encoder_decoder: run them with ``pytest exercises/encoder_decoder``.

Each test builds your module, loads the fixture's weights into it by name
(``attn.query.kernel``, ``decoder.0.cross_attn.key.bias``, ...), and compares
outputs and gradients with the reference's. The three source sequences of
the fixture hide 0, 2 and 4 padding positions. Your blocks reuse your
``MultiHeadAttention`` and ``FeedForward`` (exercises/transformer), your causal
mask, positional encoding and cross-entropy: finish those first.
"""

import functools

import jax
import numpy as np
import pytest
from flax import nnx

from course.params import abstract_module, arrays_under, module_vjp, module_with_params, param_arrays, param_shapes
from course.testing import assert_close, load_fixtures, stored_mistakes
from exercises.encoder_decoder.encoder_decoder import (
    CrossAttentionDecoderBlock, EncoderBlock, EncoderDecoder, greedy_decode,
)

FX = load_fixtures(__file__)
X, MEMORY, COTANGENT, SOURCE_MASK, SOURCE, TARGET = (jax.device_put(FX[n]) for n in (
    "x", "memory", "cotangent", "source_mask", "source", "target"))
D_MODEL, HEADS, D_FF, VOCAB, T = 16, 4, 24, 13, 5
# Added to a position's input; not a constant, which the blocks' LayerNorm would remove.
CHANGE = np.linspace(-10.0, 10.0, D_MODEL, dtype=np.float32)

CASES = {
    "encoder": (lambda: EncoderBlock(D_MODEL, HEADS, D_FF, rngs=nnx.Rngs(0)), lambda m, x: m(x, SOURCE_MASK)),
    "decoder": (lambda: CrossAttentionDecoderBlock(D_MODEL, HEADS, D_FF, rngs=nnx.Rngs(0)),
                lambda m, x: m(x[:, :T], MEMORY, SOURCE_MASK)),
    "model": (lambda: EncoderDecoder(VOCAB, D_MODEL, HEADS, D_FF, 2, rngs=nnx.Rngs(0)), None),
}


@functools.cache
def abstract(case):
    """Your module for ``case``, built abstractly: shapes and dtypes, no values, nothing computed."""
    return abstract_module(CASES[case][0])


@functools.cache  # built once per case: the tests only call the modules
def build(case):
    """Your module for ``case`` with the fixture's weights loaded."""
    return module_with_params(CASES[case][0], arrays_under(FX, f"{case}.params."), abstract=abstract(case))


@pytest.mark.parametrize("case", list(CASES))
def test_parameter_names_and_shapes(case):
    expected = {k: v.shape for k, v in arrays_under(FX, f"{case}.params.").items()}
    actual = param_shapes(abstract(case))
    assert actual == expected, f"parameters of {case}: expected {sorted(expected.items())}, got {sorted(actual.items())}"


@pytest.mark.parametrize("case", ["encoder", "decoder"])
def test_block_outputs_and_gradients_match_reference(case):
    cotangent = COTANGENT[:, :T] if case == "decoder" else COTANGENT
    output, d_x, d_params = module_vjp(build(case), CASES[case][1], X, cotangent)
    assert_close(output, FX[f"{case}.output"], what=f"{case} output", mistakes=stored_mistakes(FX, f"{case}.output"))
    assert_close(d_x, FX[f"{case}.grad_x"], what=f"{case} gradient with respect to x")
    for name, grad in d_params.items():
        assert_close(grad, FX[f"{case}.grad_params.{name}"], what=f"{case} gradient with respect to {name}")


def test_encoder_is_bidirectional_and_ignores_padding():
    # Changing a padding position's input changes nothing; changing the last real one changes every real position.
    # Compared with your encoder's own outputs, not the reference's: only a padding leak or a causal mask fails here.
    forward = nnx.jit(CASES["encoder"][1])
    encoder = build("encoder")
    out = np.asarray(forward(encoder, X))
    changed = FX["x"].copy()
    changed[1, 4:] += CHANGE  # example 1 has 4 real positions: 4 and 5 are padding
    out_changed = np.asarray(forward(encoder, jax.device_put(changed)))
    assert_close(out_changed[1, :4], out[1, :4], what="encoder outputs at real positions after changing padding "
                 "(compared with your encoder's outputs before the change)")
    changed = FX["x"].copy()
    changed[0, -1] += CHANGE
    out_changed = np.asarray(forward(encoder, jax.device_put(changed)))
    moved = np.abs(out_changed[0, :-1] - out[0, :-1]).max(axis=-1)
    all_moved = bool(np.all(moved > 1e-3))
    assert all_moved, f"encoder outputs at positions 0-4 ignore position 5 (largest changes {moved}): is it causal?"


def test_decoder_is_causal():
    # Compared with your decoder's own outputs, not the reference's: only a look at the future fails here.
    forward = nnx.jit(CASES["decoder"][1])
    decoder = build("decoder")
    changed = FX["x"].copy()
    changed[:, 3:] += CHANGE
    out, out_changed = (np.asarray(forward(decoder, x)) for x in (X, jax.device_put(changed)))
    assert_close(out_changed[:, :3], out[:, :3], what="decoder outputs at positions 0-2 after changing positions 3-4 "
                 "(compared with your decoder's outputs before the change)")


def test_model_logits_match_reference():
    logits = nnx.jit(lambda m: m(SOURCE, TARGET[:, :-1]))(build("model"))
    assert_close(logits, FX["model.logits"], what="EncoderDecoder logits")


def test_loss_and_its_gradients_match_reference():
    loss, grads = nnx.jit(nnx.value_and_grad(lambda m: m.loss(SOURCE, TARGET)))(build("model"))
    assert_close(loss, FX["model.loss"], what="EncoderDecoder.loss", mistakes=stored_mistakes(FX, "model.loss"))
    for name, grad in param_arrays(grads).items():
        assert_close(grad, FX[f"model.grad_params.{name}"], what=f"loss gradient with respect to {name}")


def test_greedy_decode_matches_reference():
    written = np.asarray(greedy_decode(build("model"), SOURCE, T, 1))
    as_expected = written.shape == FX["model.greedy"].shape and written.dtype == np.int32
    assert as_expected, (
        f"greedy_decode: expected int32{list(FX['model.greedy'].shape)}, got {written.dtype}{list(written.shape)}")
    differ = np.argwhere(written != FX["model.greedy"]).tolist()
    assert not differ, f"greedy_decode: tokens differ from the expected ones at (example, step) {differ[:4]}"
