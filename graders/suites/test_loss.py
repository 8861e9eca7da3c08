"""Grader suite for exercises/loss: ``cross_entropy_loss`` and ``next_token_loss``.

Sizes (drawn once per grading seed): batch ``B`` in 1..3, length ``T`` in
3..9, vocabulary ``V`` in 3..16; logits are standard normal times 3. Padded
sequences end in 1..T-2 pad tokens (``pad_id`` 0 or a drawn id).
"""

import jax.numpy as jnp
import numpy as np
import pytest

from graders.engine.compare import expect_array, expect_dtype, expect_like_reference, expect_raises, known_mistakes
from graders.engine.failures import Mismatch


@pytest.fixture(scope="module")
def dims(suite_rng):
    """``(B, T, V)`` of this grading run."""
    return int(suite_rng.integers(1, 4)), int(suite_rng.integers(3, 10)), int(suite_rng.integers(3, 17))


def _logits(rng, dims, scale=3.0):
    return (rng.standard_normal(dims) * scale).astype(np.float32)


def _weights(rng, shape):
    """``float32[shape]``: about 40% zeros, the others in [0.5, 1.5] (the specification's mask may weigh positions, so a
    mask made boolean is wrong), summing to more than 1 (where the ``max(sum, 1)`` guard does not apply)."""
    weights = np.where(rng.random(shape) < 0.6, rng.uniform(0.5, 1.5, shape), 0.0).astype(np.float32)
    weights.flat[:2] = 1.0
    return weights


@pytest.mark.points(3)
@pytest.mark.values("cross_entropy_loss")
@pytest.mark.parametrize("masking", ["none", "bool_mask", "weight_mask"])
def test_cross_entropy_with_gradient(student, reference, rng, dims, masking):
    logits = _logits(rng, dims)
    targets = rng.integers(0, dims[-1], dims[:-1]).astype(np.int32)
    mask = {"none": None, "bool_mask": rng.random(dims[:-1]) < 0.6,
            "weight_mask": _weights(rng, dims[:-1])}[masking]
    # The mask goes by keyword: constant, never differentiated (weights are not a model output).
    expect_like_reference(student, reference.cross_entropy_loss, "cross_entropy_loss", (logits, targets), {"mask": mask},
                          cotangent=np.float32(rng.standard_normal()), outputs=("loss",),
                          inputs=("logits", "targets"), mistakes=known_mistakes(reference, "cross_entropy_loss"))


@pytest.mark.points(2)
@pytest.mark.requires_values("cross_entropy_loss")
def test_large_logits_stay_finite(student, reference, rng, dims):
    logits = _logits(rng, dims, scale=1e4)
    targets = rng.integers(0, dims[-1], dims[:-1]).astype(np.int32)
    expect_like_reference(student, reference.cross_entropy_loss, "cross_entropy_loss", (logits, targets),
                          outputs=("loss for logits of magnitude 1e4",),
                          mistakes=known_mistakes(reference, "cross_entropy_loss"))


def _tokens(rng, dims, pad_id):
    B, T, V = dims
    tokens = rng.integers(0, V, (B, T)).astype(np.int32)
    if pad_id is not None:
        tokens[tokens == pad_id] = (pad_id + 1) % V  # pads only where padding is
        for row in tokens:
            row[T - int(rng.integers(1, T - 1)):] = pad_id
    return tokens


@pytest.mark.points(3)
@pytest.mark.values("next_token_loss")
@pytest.mark.parametrize("padding", ["none", "pad_id_0", "pad_id_other"])
def test_next_token_loss_with_gradient(student, reference, rng, dims, padding):
    pad_id = {"none": None, "pad_id_0": 0, "pad_id_other": int(rng.integers(1, dims[-1]))}[padding]
    tokens = _tokens(rng, dims, pad_id)
    expect_like_reference(student, reference.next_token_loss, "next_token_loss", (_logits(rng, dims), tokens),
                          {"pad_id": pad_id}, cotangent=np.float32(rng.standard_normal()), outputs=("loss",),
                          inputs=("logits", "tokens"), mistakes=known_mistakes(reference, "next_token_loss"))


@pytest.mark.points(2)
@pytest.mark.requires_values("cross_entropy_loss")
def test_bfloat16_logits_give_a_float32_loss(student, reference, rng, dims):
    logits = _logits(rng, dims).astype(jnp.bfloat16)
    targets = rng.integers(0, dims[-1], dims[:-1]).astype(np.int32)
    # Within float32's tolerance: the specification computes in float32, and a log-softmax in bfloat16 is off by
    # about 1e-3 of the loss (bfloat16 keeps 8 bits), ten times that tolerance.
    got, _ = expect_like_reference(student, reference.cross_entropy_loss, "cross_entropy_loss", (logits, targets),
                                   outputs=("loss for bfloat16 logits (computed in float32)",))
    expect_dtype(got, np.float32, what="loss for bfloat16 logits")


@pytest.mark.points(1)
@pytest.mark.requires_values("next_token_loss")
def test_works_under_jit(student, reference, rng, dims):
    logits, tokens = _logits(rng, dims), _tokens(rng, dims, 0)
    expect_like_reference(student, reference.next_token_loss, "next_token_loss", (logits, tokens), {"pad_id": 0},
                          transform="jit", outputs=("loss under jax.jit",))


@pytest.mark.points(1)
@pytest.mark.requires_values("cross_entropy_loss")
def test_float_targets_raise_type_error(student, rng, dims):
    logits = _logits(rng, dims)
    expect_raises(student, "cross_entropy_loss", (logits, np.zeros(dims[:-1], np.float32)), error="TypeError",
                  why="float targets")


@pytest.mark.points(1)
@pytest.mark.requires_values("cross_entropy_loss")
def test_nothing_counted_gives_zero(student, rng, dims):
    logits = _logits(rng, dims)
    targets = rng.integers(0, dims[-1], dims[:-1]).astype(np.int32)
    got = student.cross_entropy_loss(logits, targets, np.zeros(dims[:-1], bool))
    if expect_array(got, dtype=np.float32, shape=(), what="cross_entropy_loss with a mask of all False") != 0:
        raise Mismatch("cross_entropy_loss with a mask of all False: expected a scalar 0 (sum / max(count, 1))")
