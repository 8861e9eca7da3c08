"""Grader suite for exercises/attention: ``causal_mask`` and ``scaled_dot_product_attention``.

The input space of the contract (the reference's docstrings): ``query``
``float[..., T_q, d_k]``, ``key`` ``float[..., T_k, d_k]``, ``value``
``float[..., T_k, d_v]`` with the same leading dimensions (none, or any number),
float32 or bfloat16; ``d_v`` free (equal to ``d_k`` or not); ``mask`` ``None`` or
``bool`` broadcastable to ``[..., T_q, T_k]`` (numpy's rule, aligned from the
right): shared ``[T_q, T_k]``, per batch ``[B, 1, T_q, T_k]``, per head ``[H, T_q,
T_k]`` (a 3-D mask of 4-D inputs is per head, not per batch), per batch and head
``[B, H, T_q, T_k]``, per key ``[B, 1, 1, T_k]``. Rows with every key masked are
undefined and never drawn. Every grading seed covers each of these corners:
``d_v == d_k`` (unmasked case) and ``d_v != d_k`` (the others), every mask
shape above, no, one and three leading dimensions.

Sizes (drawn once per grading seed, shared by the cases): batch ``B`` in 1..2, heads ``H`` in 1..3
(at least 2 in the mask-shape cases, so that a head axis read as a batch axis shows),
``T_q`` in 2..8 and ``T_k`` in 3..8 (equal to ``T_q`` for causal masks), ``d_k`` in 2..16 (where a
missing scale shows) and ``d_v != d_k`` in 1..16, standard normal float32 values. Random masks give every query at
least two keys it may attend to (so that a missing scale shows) and one it may
not (so that a mask applied upside down is recognisable).
"""

import jax.numpy as jnp
import numpy as np
import pytest

from graders.engine.compare import check, expect_array, expect_dtype, expect_like_reference, expect_outputs, expect_raises
from graders.engine.compare import known_mistakes, leaves
from graders.engine.failures import Mismatch


def _normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _random_mask(rng, lead, T_q, T_k):
    """``bool[*lead, T_q, T_k]``, every row with at least two True (so the scale matters) and one False."""
    mask = rng.random((*lead, T_q, T_k)) < 0.5
    rows = mask.reshape(-1, T_k)
    for row in rows:
        first, second, blocked = rng.choice(T_k, size=3, replace=False)
        row[first], row[second], row[blocked] = True, True, False
    return rows.reshape(mask.shape)


@pytest.fixture(scope="module")
def dims(suite_rng):
    """``(B, H, T_q, T_k, d_k, d_v)`` of this grading run."""
    B, H, T_q, T_k = (int(suite_rng.integers(low, high)) for low, high in ((1, 3), (1, 4), (2, 9), (3, 9)))
    d_k = int(suite_rng.integers(2, 17))  # d_k = 1 would hide the scale
    d_v = int(suite_rng.choice([d for d in range(1, 17) if d != d_k]))  # d_v == d_k has its own case
    return B, H, T_q, T_k, d_k, d_v


def _inputs(rng, dims, masking, lead=None, same_widths=False):
    """``(query, key, value, mask)``; ``same_widths`` draws values with ``d_v == d_k``."""
    B, H, T_q, T_k, d_k, d_v = dims
    lead = (B, H) if lead is None else lead
    d_v = d_k if same_widths else d_v
    if masking == "causal":
        T_k = T_q
    q, k, v = _normal(rng, *lead, T_q, d_k), _normal(rng, *lead, T_k, d_k), _normal(rng, *lead, T_k, d_v)
    if masking == "random":
        return q, k, v, _random_mask(rng, (lead[0], 1, *lead[2:]) if len(lead) > 1 else lead, T_q, T_k)
    return q, k, v, (np.tril(np.ones((T_q, T_k), bool)) if masking == "causal" else None)


# A mask of one position has one right answer, which a constant can give: that case counts once random sizes pass.
@pytest.mark.points(1)
@pytest.mark.parametrize("size", [pytest.param("one", marks=pytest.mark.requires_values("causal_mask")),
                                  pytest.param("random", marks=pytest.mark.values("causal_mask"))])
def test_causal_mask(student, reference, rng, size):
    n = 1 if size == "one" else int(rng.integers(2, 17))
    got = student.causal_mask(n)
    expect_dtype(got, bool, what=f"causal_mask({n})")
    check(got, reference.causal_mask(n), what=f"causal_mask({n})", mistakes=known_mistakes(reference, "causal_mask"),
          mistake_args=(n,))


@pytest.mark.points(3)
@pytest.mark.values("scaled_dot_product_attention")
@pytest.mark.parametrize("masking", ["none", "random", "causal"])
def test_matches_reference_with_gradients(student, reference, rng, dims, masking):
    # Unmasked with d_v == d_k, the masked cases with d_v != d_k: both on every seed.
    q, k, v, mask = _inputs(rng, dims, masking, same_widths=masking == "none")
    cotangent = (_normal(rng, *q.shape[:-1], v.shape[-1]), _normal(rng, *q.shape[:-1], k.shape[-2]))
    expect_like_reference(
        student, reference.scaled_dot_product_attention, "scaled_dot_product_attention", (q, k, v, mask),
        cotangent=cotangent, outputs=("output", "weights"), inputs=("query", "key", "value", "mask"),
        mistakes=known_mistakes(reference, "scaled_dot_product_attention"),
    )


@pytest.mark.points(1)
@pytest.mark.requires_values("scaled_dot_product_attention")
@pytest.mark.parametrize("layout", ["unbatched", "mask_broadcast_over_batch_and_heads", "three_batch_dims"])
def test_leading_dimensions(student, reference, rng, dims, layout):
    if layout == "unbatched":
        q, k, v, mask = _inputs(rng, dims, "random", lead=())
    elif layout == "three_batch_dims":
        q, k, v, mask = _inputs(rng, dims, "none", lead=(2, 1, 2))
    else:
        q, k, v, mask = _inputs(rng, dims, "none")
        mask = _random_mask(rng, (), q.shape[-2], k.shape[-2])
    expect_like_reference(student, reference.scaled_dot_product_attention, "scaled_dot_product_attention",
                          (q, k, v, mask), outputs=("output", "weights"))


def _key_mask(rng, B, T_k):
    """``bool[B, 1, 1, T_k]``: keys hidden from every query, at least two visible and one hidden per batch entry."""
    return _random_mask(rng, (B,), 1, T_k)[:, None]


# The mask's lead shape for inputs led by (B, H): numpy's broadcasting, aligned from the right.
MASK_SHAPES = {
    "shared": lambda rng, B, H, T_q, T_k: _random_mask(rng, (), T_q, T_k),
    "per_batch": lambda rng, B, H, T_q, T_k: _random_mask(rng, (B, 1), T_q, T_k),
    "per_head": lambda rng, B, H, T_q, T_k: _random_mask(rng, (H,), T_q, T_k),
    "per_batch_and_head": lambda rng, B, H, T_q, T_k: _random_mask(rng, (B, H), T_q, T_k),
    "per_key": lambda rng, B, H, T_q, T_k: _key_mask(rng, B, T_k),
}


@pytest.mark.points(1)
@pytest.mark.requires_values("scaled_dot_product_attention")
@pytest.mark.parametrize("shape", list(MASK_SHAPES))
def test_every_mask_shape(student, reference, rng, dims, shape):
    B, H, T_q, T_k, d_k, d_v = dims
    H = max(H, 2)  # one head would hide a head axis read as a batch axis
    q, k, v, _ = _inputs(rng, (B, H, T_q, T_k, d_k, d_v), "none")
    mask = MASK_SHAPES[shape](rng, B, H, T_q, T_k)
    expect_like_reference(student, reference.scaled_dot_product_attention, "scaled_dot_product_attention",
                          (q, k, v, mask), outputs=(f"output for a mask of shape {list(mask.shape)}",
                                                    f"weights for a mask of shape {list(mask.shape)}"),
                          mistakes=known_mistakes(reference, "scaled_dot_product_attention"))


@pytest.mark.points(1)
@pytest.mark.requires_values("scaled_dot_product_attention")
def test_masked_weights_are_exactly_zero(student, rng, dims):
    q, k, v, mask = _inputs(rng, dims, "random")
    _, weights = expect_outputs(student.scaled_dot_product_attention(q, k, v, mask), 2, what="scaled_dot_product_attention")
    weights = expect_array(weights, dtype=np.float32, shape=(*q.shape[:-1], k.shape[-2]), what="weights")
    leaked = weights[~np.broadcast_to(mask, weights.shape)]
    if (leaked != 0).any():
        raise Mismatch(f"weights: {int((leaked != 0).sum())} masked positions got a nonzero weight; masked weights must be exactly 0")
    check(weights.sum(-1), np.ones(weights.shape[:-1], np.float32), what="the sum of each row of weights")


@pytest.mark.points(1)
@pytest.mark.requires_values("scaled_dot_product_attention")
def test_large_scores_stay_finite(student, reference, rng, dims):
    q, k, v, mask = _inputs(rng, dims, "causal")
    cotangent = (_normal(rng, *q.shape[:-1], v.shape[-1]), _normal(rng, *q.shape[:-1], k.shape[-2]))
    expect_like_reference(student, reference.scaled_dot_product_attention, "scaled_dot_product_attention",
                          (q * 300, k * 300, v, mask), cotangent=cotangent, inputs=("query", "key", "value", "mask"),
                          outputs=("output for scores near 1e5", "weights for scores near 1e5"))


@pytest.mark.points(1)
@pytest.mark.requires_values("scaled_dot_product_attention")
@pytest.mark.parametrize("transform", ["jit", "vmap"])
def test_works_under_transformations(student, reference, rng, dims, transform):
    q, k, v, mask = _inputs(rng, dims, "random")
    mask = np.broadcast_to(mask, (*q.shape[:-1], k.shape[-2])).copy()
    expect_like_reference(student, reference.scaled_dot_product_attention, "scaled_dot_product_attention",
                          (q, k, v, mask), transform=transform, in_axes=(0, 0, 0, 0), outputs=("output", "weights"))


@pytest.mark.points(2)
@pytest.mark.requires_values("scaled_dot_product_attention")
def test_bfloat16_inputs_give_bfloat16_outputs(student, reference, rng, dims):
    q, k, v, mask = (x if x is None or x.dtype == bool else x.astype(jnp.bfloat16) for x in _inputs(rng, dims, "random"))
    got, _ = expect_like_reference(student, reference.scaled_dot_product_attention, "scaled_dot_product_attention",
                                   (q, k, v, mask), outputs=("bfloat16 output", "bfloat16 weights"))
    expect_dtype(leaves(got)[0], jnp.bfloat16, what="output for bfloat16 inputs")


@pytest.mark.points(1)
@pytest.mark.requires_values("scaled_dot_product_attention")
def test_mismatched_d_k_raises_value_error(student, rng, dims):
    q, k, v, _ = _inputs(rng, dims, "none")
    expect_raises(student, "scaled_dot_product_attention", (q, np.concatenate([k, k], -1), v), error="ValueError",
                  why="query and key with different d_k")
