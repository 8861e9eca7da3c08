"""Visible tests for exercises/attention: run them with ``pytest exercises/attention``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.testing import assert_close, assert_shape_dtype, load_fixtures, stored_mistakes
from exercises.attention.attention import causal_mask, scaled_dot_product_attention

FX = load_fixtures(__file__)
# jax.device_put, unlike jnp.asarray, copies a NumPy array to the device without compiling a program;
# the tests slice and change inputs in NumPy for the same reason.
Q, K, V, MASK = (jax.device_put(FX[n]) for n in ("query", "key", "value", "mask"))


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
    diagonal_true = bool(np.asarray(causal_mask(5)).diagonal().all())
    assert diagonal_true, "causal_mask: the diagonal must be True (a position may attend to itself)"


@pytest.mark.parametrize("case", ["unmasked", "masked"])
def test_attention_matches_reference(case):
    mask = MASK if case == "masked" else None
    output, weights = scaled_dot_product_attention(Q, K, V, mask)
    assert_close(weights, FX[f"{case}.weights"], what=f"weights ({case})", mistakes=stored_mistakes(FX, f"{case}.weights"))
    assert_close(output, FX[f"{case}.output"], what=f"output ({case})", mistakes=stored_mistakes(FX, f"{case}.output"))


@pytest.mark.parametrize("case", ["unmasked", "masked"])
def test_attention_gradients_match_reference(case):
    mask = MASK if case == "masked" else None
    for name, grad in zip(("query", "key", "value"), attention_vjp(Q, K, V, mask, jax.device_put(FX["cotangent"]))):
        assert_close(grad, FX[f"{case}.grad_{name}"], what=f"gradient with respect to {name} ({case})")


def test_weights_are_a_distribution_over_keys():
    _, weights = scaled_dot_product_attention(Q, K, V, MASK)
    assert_shape_dtype(weights, (2, 3, 5, 6), jnp.float32, what="weights")
    weights = np.asarray(weights)
    assert_close(weights.sum(-1), np.ones((2, 3, 5), np.float32), what="sum of weights over keys (the softmax runs over the last axis)")
    non_negative = bool((weights >= 0).all())
    assert non_negative, "weights: every weight must be >= 0"


def test_masked_weights_are_exactly_zero():
    _, weights = scaled_dot_product_attention(Q, K, V, MASK)
    leaked = np.asarray(weights)[~np.broadcast_to(np.asarray(MASK), weights.shape)]
    none_leaked = bool((leaked == 0).all())
    assert none_leaked, f"weights: {int((leaked != 0).sum())} masked positions got nonzero weight (largest {np.abs(leaked).max():.3g}); mask True means 'may attend'"


def test_causal_attention_ignores_the_future():
    q, k, v = FX["query"][0, 0], FX["key"][0, 0, :5], FX["value"][0, 0, :5]
    k_changed, v_changed = k.copy(), v.copy()
    k_changed[3:] += 5.0
    v_changed[3:] += 5.0
    # Compiled (one program for both calls): run eagerly, every operation at these new shapes would be one.
    attention = jax.jit(scaled_dot_product_attention)
    output, _ = attention(q, k, v, causal_mask(5))
    changed, _ = attention(q, k_changed, v_changed, causal_mask(5))
    assert_close(np.asarray(changed)[:3], np.asarray(output)[:3], what="outputs at positions 0-2 after changing keys and values at positions 3-4")


def test_two_dimensional_inputs_and_broadcast_mask():
    # No batch dimensions at all, and a [T_q, T_k] mask shared by every batch entry and head.
    # Compiled (one program per shape): run eagerly, every operation at these new shapes would be one.
    attention = jax.jit(scaled_dot_product_attention)
    q, k, v, mask = FX["query"], FX["key"], FX["value"], FX["mask"][1, 0]
    output, _ = attention(q[1, 2], k[1, 2], v[1, 2], mask)
    assert_close(output, FX["masked.output"][1, 2], what="output for 2-D inputs [T, d]")
    output, _ = attention(q[1:], k[1:], v[1:], mask)
    assert_close(output, FX["masked.output"][1:], what="output with a [T_q, T_k] mask broadcast over [B, H]")


def test_jit_and_vmap():
    jitted = jax.jit(scaled_dot_product_attention)(Q, K, V, MASK)[0]
    assert_close(jitted, FX["masked.output"], what="output under jax.jit", mistakes=stored_mistakes(FX, "masked.output"))
    # Compiled too: run eagerly, every batched operation would be a program of its own.
    mapped = jax.jit(jax.vmap(scaled_dot_product_attention))(Q, K, V, np.broadcast_to(FX["mask"], (2, 3, 5, 6)))[0]
    assert_close(mapped, FX["masked.output"], what="output under jax.vmap over the batch axis")


def test_bfloat16_stays_bfloat16():
    q, k, v = (jax.device_put(FX[n].astype(jnp.bfloat16)) for n in ("query", "key", "value"))  # cast on the host
    output, weights = scaled_dot_product_attention(q, k, v, MASK)
    stays_bfloat16 = output.dtype == jnp.bfloat16
    assert stays_bfloat16, f"output: expected bfloat16 for bfloat16 inputs, got {output.dtype}"
    assert_close(output, FX["masked.output"], what="output in bfloat16", mistakes=stored_mistakes(FX, "masked.output"), dtype=jnp.bfloat16)
    assert_close(weights, FX["masked.weights"], what="weights in bfloat16", mistakes=stored_mistakes(FX, "masked.weights"), dtype=jnp.bfloat16)


def test_large_scores_do_not_overflow():
    output, weights = scaled_dot_product_attention(jax.device_put(FX["query"] * 1e3), jax.device_put(FX["key"] * 1e3), V, MASK)
    finite = bool(np.isfinite(np.asarray(weights)).all())
    assert finite, "weights: NaN or inf for large scores; softmax must subtract the row maximum (jax.nn.softmax does)"


def test_mismatched_d_k_raises_value_error():
    with pytest.raises(ValueError):
        scaled_dot_product_attention(Q, jax.device_put(FX["key"][..., :4]), V)
