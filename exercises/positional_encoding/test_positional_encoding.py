"""Visible tests for exercises/positional_encoding: run them with ``pytest exercises/positional_encoding``."""

import jax
import numpy as np
import pytest

from course.testing import assert_close, assert_shape_dtype, load_fixtures, stored_mistakes
from exercises.positional_encoding.positional_encoding import sinusoidal_positional_encoding

FX = load_fixtures(__file__)
# The sizes of the reference fixture, shared by the tests of properties: each new size is a new program to compile.
SEQ_LEN, D_MODEL = 50, 16


def test_matches_reference():
    assert_close(sinusoidal_positional_encoding(SEQ_LEN, D_MODEL), FX["default.output"], what="sinusoidal_positional_encoding(50, 16)",
                 mistakes=stored_mistakes(FX, "default.output"))


def test_base_is_used():
    assert_close(sinusoidal_positional_encoding(7, 6, base=100.0), FX["base100.output"],
                 what="sinusoidal_positional_encoding(7, 6, base=100.0)", mistakes=stored_mistakes(FX, "base100.output"))


def test_shape_and_dtype():
    assert_shape_dtype(sinusoidal_positional_encoding(SEQ_LEN, D_MODEL), (SEQ_LEN, D_MODEL), np.float32,
                       what=f"sinusoidal_positional_encoding({SEQ_LEN}, {D_MODEL})")


def test_sin_and_cos_are_interleaved():
    pe = np.asarray(sinusoidal_positional_encoding(SEQ_LEN, D_MODEL))
    positions = np.arange(SEQ_LEN, dtype=np.float32)
    # Pair i = 0 has frequency 1: column 0 is sin(p), column 1 is cos(p).
    assert_close(pe[:, 0], np.sin(positions), what="column 0 (should be sin(p))")
    assert_close(pe[:, 1], np.cos(positions), what="column 1 (should be cos(p), right after sin(p))")


def test_position_zero():
    pe = np.asarray(sinusoidal_positional_encoding(SEQ_LEN, D_MODEL))
    assert_close(pe[0], np.tile([0.0, 1.0], D_MODEL // 2).astype(np.float32), what="row 0 (sin 0 = 0, cos 0 = 1)")


def test_works_under_jit_with_static_sizes():
    jitted = jax.jit(sinusoidal_positional_encoding, static_argnums=(0, 1))
    assert_close(jitted(SEQ_LEN, D_MODEL), FX["default.output"], what="jax.jit(sinusoidal_positional_encoding)(50, 16)",
                 mistakes=stored_mistakes(FX, "default.output"))


@pytest.mark.parametrize(("seq_len", "d_model"), [(4, 7), (0, 8), (4, 0), (-1, 8)])
def test_bad_sizes_raise_value_error(seq_len, d_model):
    with pytest.raises(ValueError):
        sinusoidal_positional_encoding(seq_len, d_model)
