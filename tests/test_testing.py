"""The visible tests' comparison helpers explain what is wrong."""

import jax.numpy as jnp
import numpy as np
import pytest

from course.testing import assert_close, assert_shape_dtype, chi_square_p_value, tolerance


def test_equal_values_pass():
    assert_close(jnp.ones((2, 3)), np.ones((2, 3), np.float32), what="x")
    assert_close(jnp.ones((2, 3)) + 1e-6, np.ones((2, 3), np.float32), what="x")


def test_largest_error_is_located():
    got = np.zeros((3, 4), np.float32)
    got[2, 1] = 0.5
    got[0, 0] = 0.1
    with pytest.raises(AssertionError, match=r"weights: 2 of 12 values differ.*Largest error 0.5 at index \(2, 1\): got 0.5, expected 0"):
        assert_close(got, np.zeros((3, 4), np.float32), what="weights")


def test_shape_mismatch_is_named():
    with pytest.raises(AssertionError, match=r"output: expected shape \(2, 3\), got \(3, 2\)"):
        assert_close(np.zeros((3, 2)), np.zeros((2, 3)), what="output")


def test_nan_is_reported_as_such():
    with pytest.raises(AssertionError, match="NaN or infinite"):
        assert_close(np.array([1.0, np.nan], np.float32), np.ones(2, np.float32), what="loss")


def test_booleans_compare_exactly():
    with pytest.raises(AssertionError, match=r"mask: 1 of 4 entries differ; first at index \(0, 1\)"):
        assert_close(np.array([[True, True], [True, True]]), np.tril(np.ones((2, 2), bool)), what="mask")


def test_non_arrays_are_rejected():
    with pytest.raises(AssertionError, match="expected an array, got list"):
        assert_close([1.0], np.ones(1), what="x")


def test_bfloat16_gets_its_own_tolerance():
    assert tolerance(jnp.bfloat16)["atol"] > tolerance(jnp.float32)["atol"]
    assert_close(jnp.asarray([1.01], jnp.bfloat16), np.ones(1, np.float32), what="x")
    with pytest.raises(AssertionError):
        assert_close(jnp.asarray([1.01], jnp.float32), np.ones(1, np.float32), what="x")


def test_shape_and_dtype():
    assert_shape_dtype(jnp.ones((2, 2), bool), (2, 2), bool, what="m")
    with pytest.raises(AssertionError, match="expected dtype bool, got float32"):
        assert_shape_dtype(jnp.ones((2, 2)), (2, 2), bool, what="m")


def test_chi_square_p_value_matches_the_tables():
    # Two categories, statistic (60-50)^2/50 * 2 = 4 on one degree of freedom: p = 0.0455 (textbook tables).
    assert chi_square_p_value([60, 40], [0.5, 0.5]) == pytest.approx(0.0455, abs=1e-4)
    # Probabilities are normalized; counts exactly as expected give p = 1.
    assert chi_square_p_value([10, 20, 30], [1, 2, 3]) == pytest.approx(1.0)
    # Five categories, statistic 9.4877 (the 5% critical value on four degrees of freedom).
    counts = np.array([100, 100, 100, 100, 100]) + np.array([1, -1, 0, 0, 0]) * np.sqrt(9.4877 * 100 / 2)
    assert chi_square_p_value(counts, np.full(5, 0.2)) == pytest.approx(0.05, abs=1e-4)


def test_chi_square_p_value_names_bad_arguments():
    with pytest.raises(ValueError, match="counts and probabilities"):
        chi_square_p_value([1, 2, 3], [0.5, 0.5])
    with pytest.raises(ValueError, match="counts and probabilities"):
        chi_square_p_value([1], [1.0])
    with pytest.raises(ValueError, match="probabilities: every category"):
        chi_square_p_value([1, 2], [1.0, 0.0])


def test_compilation_cache_folder_is_per_user_and_can_be_turned_off(tmp_path):
    from course.testing.compilation_cache import cache_dir

    default = cache_dir({"XDG_CACHE_HOME": str(tmp_path)})
    assert default.parent == tmp_path / "jax-transformers-course" / "visible-tests"
    assert cache_dir({"COURSE_COMPILATION_CACHE": str(tmp_path / "xla")}) == tmp_path / "xla"
    assert cache_dir({"COURSE_COMPILATION_CACHE": "0"}) is None
    assert cache_dir({"COURSE_COMPILATION_CACHE": "OFF"}) is None
