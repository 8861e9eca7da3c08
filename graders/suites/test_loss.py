"""Grader suite for exercises/loss: ``cross_entropy_loss`` and ``next_token_loss``.

Sizes (drawn once per grading seed): batch ``B`` in 1..3, length ``T`` in
3..9, vocabulary ``V`` in 3..16; logits are standard normal times 3. Padded
sequences end in 1..T-2 pad tokens (``pad_id`` 0 or a drawn id).
"""

import jax.numpy as jnp
import numpy as np
import pytest

from graders.engine.compare import expect_dtype, expect_like_reference, expect_raises
from graders.engine.failures import Mismatch


@pytest.fixture(scope="module")
def dims(suite_rng):
    """``(B, T, V)`` of this grading run."""
    return int(suite_rng.integers(1, 4)), int(suite_rng.integers(3, 10)), int(suite_rng.integers(3, 17))


def _logits(rng, dims, scale=3.0):
    return (rng.standard_normal(dims) * scale).astype(np.float32)


def _naive_cross_entropy(logits, targets, mask=None):
    """Cross-entropy without subtracting the maximum: overflows for large logits."""
    z = logits.astype(jnp.float32)
    log_probs = z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))
    nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    weights = jnp.ones(nll.shape) if mask is None else mask.astype(jnp.float32)
    return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def _cross_entropy_mistakes(reference):
    ce = reference.cross_entropy_loss

    def count(targets, mask):
        return targets.size if mask is None else jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0)

    mistakes = {
        "the loss is summed, not averaged": lambda z, t, mask=None: ce(z, t, mask) * count(t, mask),
        "the loss has the wrong sign: it is -log p(target)": lambda z, t, mask=None: -ce(z, t, mask),
        "the mask is not applied (every position counted)": lambda z, t, mask=None: ce(z, t),
        "divided by the number of positions, not by the number counted by the mask":
            lambda z, t, mask=None: ce(z, t, mask) * count(t, mask) / t.size,
    }
    return mistakes


def _next_token_mistakes(reference):
    ce = reference.cross_entropy_loss

    def pad_mask(targets, pad_id):
        return None if pad_id is None else targets != pad_id

    return {
        "targets are not shifted by one: logits[:, t] predict tokens[:, t + 1]":
            lambda z, tokens, pad_id=None: ce(z, tokens, pad_mask(tokens, pad_id)),
        "shifted the wrong way: logits[:, :-1] predict tokens[:, 1:]":
            lambda z, tokens, pad_id=None: ce(z[:, 1:], tokens[:, :-1], pad_mask(tokens[:, :-1], pad_id)),
        "pad targets are counted: drop the targets equal to pad_id":
            lambda z, tokens, pad_id=None: ce(z[:, :-1], tokens[:, 1:]),
        "the pad mask comes from the inputs tokens[:, :-1], not from the targets tokens[:, 1:]":
            lambda z, tokens, pad_id=None: ce(z[:, :-1], tokens[:, 1:], pad_mask(tokens[:, :-1], pad_id)),
    }


@pytest.mark.points(3)
@pytest.mark.parametrize("masking", ["none", "bool_mask", "weight_mask"])
def test_cross_entropy_with_gradient(student, reference, rng, dims, masking):
    logits = _logits(rng, dims)
    targets = rng.integers(0, dims[-1], dims[:-1]).astype(np.int32)
    mask = {"none": None, "bool_mask": rng.random(dims[:-1]) < 0.6,
            "weight_mask": (rng.random(dims[:-1]) < 0.6).astype(np.float32)}[masking]
    # The mask goes by keyword: constant, never differentiated (weights are not a model output).
    expect_like_reference(student, reference.cross_entropy_loss, "cross_entropy_loss", (logits, targets), {"mask": mask},
                          cotangent=np.float32(rng.standard_normal()), outputs=("loss",),
                          inputs=("logits", "targets"), mistakes=_cross_entropy_mistakes(reference))


@pytest.mark.points(2)
def test_large_logits_stay_finite(student, reference, rng, dims):
    logits = _logits(rng, dims, scale=1e4)
    targets = rng.integers(0, dims[-1], dims[:-1]).astype(np.int32)
    mistakes = {"exp overflowed: subtract the largest logit first (or use jax.nn.log_softmax)": _naive_cross_entropy}
    expect_like_reference(student, reference.cross_entropy_loss, "cross_entropy_loss", (logits, targets),
                          outputs=("loss for logits of magnitude 1e4",), mistakes=mistakes)


def _tokens(rng, dims, pad_id):
    B, T, V = dims
    tokens = rng.integers(0, V, (B, T)).astype(np.int32)
    if pad_id is not None:
        tokens[tokens == pad_id] = (pad_id + 1) % V  # pads only where padding is
        for row in tokens:
            row[T - int(rng.integers(1, T - 1)):] = pad_id
    return tokens


@pytest.mark.points(3)
@pytest.mark.parametrize("padding", ["none", "pad_id_0", "pad_id_other"])
def test_next_token_loss_with_gradient(student, reference, rng, dims, padding):
    pad_id = {"none": None, "pad_id_0": 0, "pad_id_other": int(rng.integers(1, dims[-1]))}[padding]
    tokens = _tokens(rng, dims, pad_id)
    expect_like_reference(student, reference.next_token_loss, "next_token_loss", (_logits(rng, dims), tokens),
                          {"pad_id": pad_id}, cotangent=np.float32(rng.standard_normal()), outputs=("loss",),
                          inputs=("logits", "tokens"), mistakes=_next_token_mistakes(reference))


@pytest.mark.points(2)
def test_bfloat16_logits_give_a_float32_loss(student, reference, rng, dims):
    logits = _logits(rng, dims).astype(jnp.bfloat16)
    targets = rng.integers(0, dims[-1], dims[:-1]).astype(np.int32)
    got, _ = expect_like_reference(student, reference.cross_entropy_loss, "cross_entropy_loss", (logits, targets),
                                   outputs=("loss for bfloat16 logits",), tolerance_of=jnp.bfloat16)
    expect_dtype(got, np.float32, what="loss for bfloat16 logits")


@pytest.mark.points(1)
def test_works_under_jit(student, reference, rng, dims):
    logits, tokens = _logits(rng, dims), _tokens(rng, dims, 0)
    expect_like_reference(student, reference.next_token_loss, "next_token_loss", (logits, tokens), {"pad_id": 0},
                          transform="jit", outputs=("loss under jax.jit",))


@pytest.mark.points(1)
def test_float_targets_raise_type_error(student, rng, dims):
    logits = _logits(rng, dims)
    expect_raises(student, "cross_entropy_loss", (logits, np.zeros(dims[:-1], np.float32)), error="TypeError",
                  why="float targets")


@pytest.mark.points(1)
def test_nothing_counted_gives_zero(student, rng, dims):
    logits = _logits(rng, dims)
    targets = rng.integers(0, dims[-1], dims[:-1]).astype(np.int32)
    got = student.cross_entropy_loss(logits, targets, np.zeros(dims[:-1], bool))
    if not (hasattr(got, "shape") and got.shape == () and np.isfinite(got) and float(got) == 0.0):
        raise Mismatch("cross_entropy_loss with a mask of all False: expected a scalar 0 (sum / max(count, 1))")
