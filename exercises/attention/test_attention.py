"""Visible tests for exercises/attention: run them with ``pytest exercises/attention``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.testing import assert_close, assert_shape_dtype, load_fixtures, stored_mistakes
from exercises.attention.attention import causal_mask, scaled_dot_product_attention

FX = load_fixtures(__file__)
Q, K, V = (jnp.asarray(FX[n]) for n in ("query", "key", "value"))
MASK = jnp.asarray(FX["mask"])


@jax.jit  # one compiled program per case; eagerly, every operation of the backward pass would be one
def attention_vjp(q, k, v, mask, cotangent):
    """The gradients of ``sum(output * cotangent)`` with respect to ``q``, ``k`` and ``v``."""
    _, vjp = jax.vjp(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask)[0], q, k, v)
    return vjp(cotangent)


def test_causal_mask_matches_reference():
    mask = causal_mask(6)
    assert_shape_dtype(mask, (6, 6), bool, what="causal_mask(6)")
    assert_close(mask, FX["causal_mask.output"], what="causal_mask(6)", mistakes=stored_mistakes(FX, "causal_mask.output"))


def test_causal_mask_lets_each_position_see_itself():
    assert np.asarray(causal_mask(5)).diagonal().all(), "causal_mask: the diagonal must be True (a position may attend to itself)"


@pytest.mark.parametrize("case", ["unmasked", "masked"])
def test_attention_matches_reference(case):
    mask = MASK if case == "masked" else None
    output, weights = scaled_dot_product_attention(Q, K, V, mask)
    assert_close(weights, FX[f"{case}.weights"], what=f"weights ({case})", mistakes=stored_mistakes(FX, f"{case}.weights"))
    assert_close(output, FX[f"{case}.output"], what=f"output ({case})", mistakes=stored_mistakes(FX, f"{case}.output"))


@pytest.mark.parametrize("case", ["unmasked", "masked"])
def test_attention_gradients_match_reference(case):
    mask = MASK if case == "masked" else None
    for name, grad in zip(("query", "key", "value"), attention_vjp(Q, K, V, mask, jnp.asarray(FX["cotangent"]))):
        assert_close(grad, FX[f"{case}.grad_{name}"], what=f"gradient with respect to {name} ({case})")


def test_weights_are_a_distribution_over_keys():
    _, weights = scaled_dot_product_attention(Q, K, V, MASK)
    assert_shape_dtype(weights, (2, 3, 5, 6), jnp.float32, what="weights")
    assert_close(weights.sum(-1), np.ones((2, 3, 5), np.float32), what="sum of weights over keys (the softmax runs over the last axis)")
    assert bool((weights >= 0).all()), "weights: every weight must be >= 0"


def test_masked_weights_are_exactly_zero():
    _, weights = scaled_dot_product_attention(Q, K, V, MASK)
    leaked = np.asarray(weights)[~np.broadcast_to(np.asarray(MASK), weights.shape)]
    assert (leaked == 0).all(), f"weights: {int((leaked != 0).sum())} masked positions got nonzero weight (largest {np.abs(leaked).max():.3g}); mask True means 'may attend'"


def test_causal_attention_ignores_the_future():
    q, k, v = Q[0, 0], K[0, 0, :5], V[0, 0, :5]
    output, _ = scaled_dot_product_attention(q, k, v, causal_mask(5))
    changed, _ = scaled_dot_product_attention(q, k.at[3:].add(5.0), v.at[3:].add(5.0), causal_mask(5))
    assert_close(changed[:3], output[:3], what="outputs at positions 0-2 after changing keys and values at positions 3-4")


def test_two_dimensional_inputs_and_broadcast_mask():
    # No batch dimensions at all, and a [T_q, T_k] mask shared by every batch entry and head.
    output, _ = scaled_dot_product_attention(Q[1, 2], K[1, 2], V[1, 2], MASK[1, 0])
    assert_close(output, FX["masked.output"][1, 2], what="output for 2-D inputs [T, d]")
    output, _ = scaled_dot_product_attention(Q[1:], K[1:], V[1:], MASK[1, 0])
    assert_close(output, FX["masked.output"][1:], what="output with a [T_q, T_k] mask broadcast over [B, H]")


def test_jit_and_vmap():
    jitted = jax.jit(scaled_dot_product_attention)(Q, K, V, MASK)[0]
    assert_close(jitted, FX["masked.output"], what="output under jax.jit", mistakes=stored_mistakes(FX, "masked.output"))
    mapped = jax.vmap(scaled_dot_product_attention)(Q, K, V, jnp.broadcast_to(MASK, (2, 3, 5, 6)))[0]
    assert_close(mapped, FX["masked.output"], what="output under jax.vmap over the batch axis")


def test_bfloat16_stays_bfloat16():
    output, weights = scaled_dot_product_attention(Q.astype(jnp.bfloat16), K.astype(jnp.bfloat16), V.astype(jnp.bfloat16), MASK)
    assert output.dtype == jnp.bfloat16, f"output: expected bfloat16 for bfloat16 inputs, got {output.dtype}"
    assert_close(output, FX["masked.output"], what="output in bfloat16", mistakes=stored_mistakes(FX, "masked.output"), dtype=jnp.bfloat16)
    assert_close(weights, FX["masked.weights"], what="weights in bfloat16", mistakes=stored_mistakes(FX, "masked.weights"), dtype=jnp.bfloat16)


def test_large_scores_do_not_overflow():
    output, weights = scaled_dot_product_attention(Q * 1e3, K * 1e3, V, MASK)
    assert bool(jnp.isfinite(weights).all()), "weights: NaN or inf for large scores; softmax must subtract the row maximum (jax.nn.softmax does)"


def test_mismatched_d_k_raises_value_error():
    with pytest.raises(ValueError):
        scaled_dot_product_attention(Q, K[..., :4], V)
