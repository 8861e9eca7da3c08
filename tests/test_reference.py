"""The reference solutions beyond the visible tests: bad input, dtype discipline, transformations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

RNG = np.random.default_rng(1234)


def normal(*shape):
    return jnp.asarray(RNG.standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize(
    ("call", "error", "names"),
    [
        (lambda m: m.sinusoidal_positional_encoding(4, 7), ValueError, "d_model"),
        (lambda m: m.sinusoidal_positional_encoding(0, 8), ValueError, "seq_len"),
    ],
)
def test_positional_encoding_bad_input(reference_module, call, error, names):
    with pytest.raises(error, match=names):
        call(reference_module("positional_encoding"))


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ((normal(3, 4), normal(5, 3), normal(5, 2)), r"query and key: d_k must match.*\(3, 4\).*\(5, 3\)"),
        ((normal(3, 4), normal(5, 4), normal(6, 2)), r"key and value: T_k must match"),
        ((normal(4), normal(5, 4), normal(5, 2)), r"query: expected shape \[..., T, d\], got \(4,\)"),
    ],
)
def test_attention_bad_input(reference_module, args, names):
    with pytest.raises(ValueError, match=names):
        reference_module("attention").scaled_dot_product_attention(*args)


def test_causal_mask_bad_input(reference_module):
    with pytest.raises(ValueError, match="seq_len"):
        reference_module("attention").causal_mask(0)


@pytest.mark.parametrize(
    ("call", "error", "names"),
    [
        (lambda m: m.cross_entropy_loss(normal(2, 5), jnp.zeros(2)), TypeError, "targets: expected an integer array"),
        (lambda m: m.cross_entropy_loss(normal(2, 5), jnp.zeros(3, int)), ValueError, r"logits and targets.*\(2, 5\).*\(3,\)"),
        (lambda m: m.cross_entropy_loss(normal(2, 5), jnp.zeros(2, int), jnp.ones(3)), ValueError, "mask"),
        (lambda m: m.next_token_loss(normal(2, 4, 5), jnp.zeros((2, 4))), TypeError, "tokens"),
        (lambda m: m.next_token_loss(normal(2, 4, 5), jnp.zeros((2, 3), int)), ValueError, r"logits and tokens"),
        (lambda m: m.next_token_loss(normal(2, 1, 5), jnp.zeros((2, 1), int)), ValueError, "at least 2 positions"),
    ],
)
def test_loss_bad_input(reference_module, call, error, names):
    with pytest.raises(error, match=names):
        call(reference_module("loss"))


def test_jax_basics_bad_input(reference_module):
    m = reference_module("jax_basics")
    with pytest.raises(ValueError, match="params"):
        m.predict([], normal(2, 3))
    with pytest.raises(ValueError, match="batch"):
        m.mse_loss([(normal(3, 2), normal(2))], (normal(4, 3), normal(4, 5)))


def test_reference_runs_under_strict_dtype_promotion(reference_module):
    # Strict promotion surfaces silent float64/int mixing; every reference path must pass it.
    attention, loss = reference_module("attention"), reference_module("loss")
    pe, basics = reference_module("positional_encoding"), reference_module("jax_basics")
    with jax.numpy_dtype_promotion("strict"):
        for dtype in (jnp.float32, jnp.bfloat16):
            q = normal(2, 5, 8).astype(dtype)
            out, weights = attention.scaled_dot_product_attention(q, q, q, attention.causal_mask(5))
            assert out.dtype == weights.dtype == dtype
            value = loss.next_token_loss(normal(2, 5, 7).astype(dtype), jnp.asarray(RNG.integers(0, 7, (2, 5))), pad_id=0)
            assert value.dtype == jnp.float32
        assert pe.sinusoidal_positional_encoding(6, 4).dtype == jnp.float32
        params = [(normal(3, 4), normal(4)), (normal(4, 2), normal(2))]
        loss_value, grads = basics.loss_and_grad(params, (normal(5, 3), normal(5, 2)))
        assert jax.tree.structure(grads) == jax.tree.structure(params)


def test_attention_gradients_are_finite_for_a_causal_mask(reference_module):
    attention = reference_module("attention")
    q = normal(2, 6, 4)
    grads = jax.grad(lambda q: attention.scaled_dot_product_attention(q, q, q, attention.causal_mask(6))[0].sum())(q)
    assert bool(jnp.isfinite(grads).all())


def test_loss_matches_a_float64_numpy_computation(reference_module):
    logits = RNG.standard_normal((4, 6, 9)) * 20
    targets = RNG.integers(0, 9, (4, 6))
    mask = RNG.random((4, 6)) < 0.5
    shifted = logits - logits.max(-1, keepdims=True)
    nll = -(np.take_along_axis(shifted, targets[..., None], -1)[..., 0] - np.log(np.exp(shifted).sum(-1)))
    expected = (nll * mask).sum() / max(mask.sum(), 1)
    got = reference_module("loss").cross_entropy_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(targets), jnp.asarray(mask))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_encoder_decoder_bad_input_and_strict_dtype_promotion(reference_module):
    m = reference_module("encoder_decoder")
    model = m.EncoderDecoder(7, 8, 2, 16, 1, rngs=nnx.Rngs(0))
    source, target = jnp.asarray([[3, 4, 0], [5, 0, 0]]), jnp.asarray([[1, 4, 3, 2], [1, 5, 2, 0]])
    with jax.numpy_dtype_promotion("strict"):
        assert model.loss(source, target).dtype == jnp.float32
    with pytest.raises(ValueError, match="source"):
        m.greedy_decode(model, source[0], 3, 1)
    with pytest.raises(ValueError, match="length"):
        m.greedy_decode(model, source, 0, 1)
