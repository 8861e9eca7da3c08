"""Grader suite for exercises/positional_encoding: ``sinusoidal_positional_encoding``.

Sizes (drawn once per grading seed): ``seq_len`` in 2..64 and an even
``d_model`` in 4..64; the custom ``base`` in 50..1000. Positions stay below 64
so that every correct formula (``p / base ** (2i / d)`` or
``p * exp(-2i log(base) / d)``) agrees within the float32 tolerance.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from graders.engine.compare import expect_dtype, expect_like_reference, expect_raises
from graders.engine.failures import Mismatch


@pytest.fixture(scope="module")
def sizes(suite_rng):
    """``(seq_len, d_model, base)`` of this grading run."""
    return int(suite_rng.integers(2, 65)), 2 * int(suite_rng.integers(2, 33)), float(suite_rng.integers(50, 1001))


def _mistakes(reference):
    pe = reference.sinusoidal_positional_encoding

    def swap_pairs(table):
        return table.reshape(*table.shape[:-1], -1, 2)[..., ::-1].reshape(table.shape)

    return {
        "sin and cos are concatenated instead of interleaved (sin in even columns, cos in odd ones)":
            lambda n, d, base=10000.0: jnp.concatenate([pe(n, d, base)[:, 0::2], pe(n, d, base)[:, 1::2]], axis=-1),
        "sin and cos are swapped: even columns hold sin, odd columns cos":
            lambda n, d, base=10000.0: swap_pairs(pe(n, d, base)),
        "the frequencies are off: the exponent is 2i / d_model for pair i (not i / d_model)":
            lambda n, d, base=10000.0: pe(n, 2 * d, base)[:, :d],
        "positions start at 1; the first position is 0":
            lambda n, d, base=10000.0: pe(n + 1, d, base)[1:],
        "the base argument is not used":
            lambda n, d, base=10000.0: pe(n, d),
    }


@pytest.mark.points(3)
@pytest.mark.parametrize("base", ["paper", "custom"])
def test_matches_reference(student, reference, sizes, base):
    seq_len, d_model, custom = sizes
    kwargs = {} if base == "paper" else {"base": custom}
    expect_like_reference(student, reference.sinusoidal_positional_encoding, "sinusoidal_positional_encoding",
                          (seq_len, d_model), kwargs, outputs=(f"encoding({seq_len}, {d_model})",), mistakes=_mistakes(reference))


@pytest.mark.points(1)
def test_shape_and_dtype(student, sizes):
    seq_len, d_model, _ = sizes
    got = student.sinusoidal_positional_encoding(seq_len, d_model)
    expect_dtype(got, np.float32, what="the encoding")
    if tuple(got.shape) != (seq_len, d_model):
        raise Mismatch(f"the encoding: expected shape {(seq_len, d_model)}, got {tuple(got.shape)}")


@pytest.mark.points(1)
def test_one_position(student, reference, sizes):
    _, d_model, _ = sizes
    expect_like_reference(student, reference.sinusoidal_positional_encoding, "sinusoidal_positional_encoding",
                          (1, d_model), outputs=(f"encoding(1, {d_model})",), mistakes=_mistakes(reference))


@pytest.mark.points(1)
def test_works_under_jit_with_static_sizes(student, reference, sizes):
    seq_len, d_model, _ = sizes
    expect_like_reference(student, reference.sinusoidal_positional_encoding, "sinusoidal_positional_encoding",
                          (seq_len, d_model), transform="jit", outputs=("encoding under jax.jit",))


@pytest.mark.points(1)
@pytest.mark.parametrize("bad", ["odd_d_model", "zero_seq_len"])
def test_bad_sizes_raise_value_error(student, sizes, bad):
    seq_len, d_model, _ = sizes
    args = (seq_len, d_model + 1) if bad == "odd_d_model" else (0, d_model)
    expect_raises(student, "sinusoidal_positional_encoding", args, error="ValueError", why=f"sizes {args}")
