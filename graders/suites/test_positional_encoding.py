"""Grader suite for exercises/positional_encoding: ``sinusoidal_positional_encoding``.

Sizes (drawn once per grading seed): ``seq_len`` in 2..64 and an even
``d_model`` in 4..64; the custom ``base`` in 50..1000. Positions stay below 64
so that every correct formula (``p / base ** (2i / d)`` or
``p * exp(-2i log(base) / d)``) agrees within the float32 tolerance.
"""

import numpy as np
import pytest

from graders.engine.compare import expect_array, expect_like_reference, expect_raises, known_mistakes


@pytest.fixture(scope="module")
def sizes(suite_rng):
    """``(seq_len, d_model, base)`` of this grading run."""
    return int(suite_rng.integers(2, 65)), 2 * int(suite_rng.integers(2, 33)), float(suite_rng.integers(50, 1001))


@pytest.mark.points(3)
@pytest.mark.values("sinusoidal_positional_encoding")
@pytest.mark.parametrize("base", ["paper", "custom"])
def test_matches_reference(student, reference, sizes, base):
    seq_len, d_model, custom = sizes
    kwargs = {} if base == "paper" else {"base": custom}
    expect_like_reference(student, reference.sinusoidal_positional_encoding, "sinusoidal_positional_encoding",
                          (seq_len, d_model), kwargs, outputs=(f"encoding({seq_len}, {d_model})",),
                          mistakes=known_mistakes(reference, "sinusoidal_positional_encoding"))


@pytest.mark.points(1)
@pytest.mark.requires_values("sinusoidal_positional_encoding")
def test_shape_and_dtype(student, sizes):
    seq_len, d_model, _ = sizes
    expect_array(student.sinusoidal_positional_encoding(seq_len, d_model), dtype=np.float32, shape=(seq_len, d_model),
                 what="the encoding")


# Position 0 is the same row of zeros and ones whatever the formula: a constant can match it.
@pytest.mark.points(1)
@pytest.mark.requires_values("sinusoidal_positional_encoding")
def test_one_position(student, reference, sizes):
    _, d_model, _ = sizes
    expect_like_reference(student, reference.sinusoidal_positional_encoding, "sinusoidal_positional_encoding",
                          (1, d_model), outputs=(f"encoding(1, {d_model})",),
                          mistakes=known_mistakes(reference, "sinusoidal_positional_encoding"))


@pytest.mark.points(1)
@pytest.mark.requires_values("sinusoidal_positional_encoding")
def test_works_under_jit_with_static_sizes(student, reference, sizes):
    seq_len, d_model, _ = sizes
    expect_like_reference(student, reference.sinusoidal_positional_encoding, "sinusoidal_positional_encoding",
                          (seq_len, d_model), transform="jit", outputs=("encoding under jax.jit",))


@pytest.mark.points(1)
@pytest.mark.requires_values("sinusoidal_positional_encoding")
@pytest.mark.parametrize("bad", ["odd_d_model", "zero_seq_len"])
def test_bad_sizes_raise_value_error(student, sizes, bad):
    seq_len, d_model, _ = sizes
    args = (seq_len, d_model + 1) if bad == "odd_d_model" else (0, d_model)
    expect_raises(student, "sinusoidal_positional_encoding", args, error="ValueError", why=f"sizes {args}")
