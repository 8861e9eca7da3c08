"""The visible tests' comparison helpers explain what is wrong."""

import jax.numpy as jnp
import numpy as np
import pytest

from course.testing import assert_close, assert_shape_dtype, chi_square_p_value, describe_mismatch, tolerance


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
    # A bfloat16 question (fixtures hold its values in float32) is answered at bfloat16's tolerance.
    assert tolerance(jnp.bfloat16)["atol"] > tolerance(jnp.float32)["atol"]
    assert_close(jnp.asarray([1.01], jnp.bfloat16), np.ones(1, np.float32), what="x", dtype=jnp.bfloat16)
    assert_close(jnp.asarray([1.01], jnp.bfloat16), jnp.ones(1, jnp.bfloat16), what="x")
    with pytest.raises(AssertionError):
        assert_close(jnp.asarray([1.01], jnp.float32), np.ones(1, np.float32), what="x")


def test_a_bfloat16_answer_to_a_float32_question_fails_on_its_dtype():
    # Within bfloat16's tolerance of the expected values, but the tolerance follows the question, not the answer.
    with pytest.raises(AssertionError, match=r"^x: expected dtype float32, got bfloat16$"):
        assert_close(jnp.asarray([1.01], jnp.bfloat16), np.ones(1, np.float32), what="x")


def test_a_float32_answer_to_a_bfloat16_question_names_the_dtype():
    with pytest.raises(AssertionError, match=r"^output: expected dtype bfloat16, got float32$"):
        assert_close(np.ones(3, np.float32), np.ones(3, np.float32), what="output", dtype=jnp.bfloat16)
    assert describe_mismatch(np.ones(3, np.float32), jnp.ones(3, jnp.bfloat16), what="output") == (
        "output: expected dtype bfloat16, got float32")


def test_two_percent_off_in_the_right_dtype_fails_at_float32_tolerance():
    expected = np.linspace(1, 2, 6, dtype=np.float32)
    with pytest.raises(AssertionError, match=r"x: 6 of 6 values differ .*atol=1e-05 \+ rtol=0.0001"):
        assert_close(expected * np.float32(1.02), expected, what="x")


def test_checks_run_in_order_array_dtype_shape_values():
    expected = np.zeros((2, 3), np.float32)
    assert describe_mismatch([0.0], expected, what="y") == "y: expected an array, got list"
    # Wrong dtype, shape and values at once: the dtype is named first, then the shape, then the values.
    assert describe_mismatch(np.ones((3, 2), np.float64), expected, what="y") == "y: expected dtype float32, got float64"
    assert describe_mismatch(np.ones((3, 2), np.float32), expected, what="y") == "y: expected shape (2, 3), got (3, 2)"
    assert describe_mismatch(np.ones((2, 3), np.float32), expected, what="y").startswith("y: 6 of 6 values differ")
    assert describe_mismatch(np.zeros((2, 3), np.float32), expected, what="y") is None


def test_explicit_tolerance_of_compares_across_precisions():
    # A float32 loss computed from bfloat16 logits: float32 is expected, at bfloat16's tolerance.
    expected = np.ones(2, np.float32)
    assert describe_mismatch(np.full(2, 1.01, np.float32), expected, what="loss", tolerance_of=jnp.bfloat16) is None
    assert describe_mismatch(np.full(2, 1.01, np.float32), expected, what="loss") is not None
    assert describe_mismatch(jnp.full(2, 1.01, jnp.bfloat16), expected, what="loss", tolerance_of=jnp.bfloat16) == (
        "loss: expected dtype float32, got bfloat16")


def test_integers_and_booleans_need_their_dtype():
    ids = np.array([3, 1, 4], np.int32)
    assert describe_mismatch(jnp.asarray(ids), ids, what="ids") is None
    assert describe_mismatch(ids.astype(np.float32), ids, what="ids") == "ids: expected dtype int32, got float32"
    mask = np.tril(np.ones((2, 2), bool))
    assert describe_mismatch(jnp.asarray(mask), mask, what="mask") is None
    assert describe_mismatch(mask.astype(np.int32), mask, what="mask") == "mask: expected dtype bool, got int32"


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


def test_the_compilation_cache_keeps_recent_programs_within_its_bound(tmp_path):
    """JAX deletes the least recently loaded programs past the bound (here 60 KB instead of MAX_BYTES)."""
    import subprocess
    import sys

    script = """
import sys, jax, jax.numpy as jnp
from course.testing import compilation_cache
compilation_cache.MAX_BYTES = 60_000
compilation_cache.persist_compilations(sys.argv[1])
for n in range(1, 31):  # 60 programs (jnp.ones too) of two or three kilobytes each
    jax.jit(lambda x: jnp.sin(x) * 3.0)(jnp.ones(n)).block_until_ready()
"""
    for _ in range(2):  # the second run loads most programs and evicts while it writes the rest
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "xla")], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        entries = [p for p in (tmp_path / "xla").iterdir() if p.name.endswith("-cache")]
        assert 5 <= len(entries) < 60 and sum(p.stat().st_size for p in entries) <= 60_000, sorted(
            (p.name, p.stat().st_size) for p in entries)


def test_visible_tests_multiply_float32_matrices_at_full_precision_and_compile_fast(tmp_path):
    """On a GPU, JAX's default precision (TF32) errs beyond the float32 tolerances: the visible tests' conftest turns it
    off. It also asks XLA for fast compilation (course/compile_flags.py), keeping a flag the student set."""
    import subprocess
    import sys

    from course.compile_flags import FAST_COMPILATION
    from tests.conftest import ROOT

    script = ("import os, runpy, jax; runpy.run_path('exercises/conftest.py'); "
              "print(os.environ['XLA_FLAGS']); print(jax.config.jax_default_matmul_precision)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COURSE_COMPILATION_CACHE": "0",
           "XLA_FLAGS": "--xla_cpu_use_fusion_emitters=true"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    flags, precision = done.stdout.splitlines()[-2:]
    assert precision == "highest"
    assert "--xla_cpu_use_fusion_emitters=true" in flags.split() and "--xla_cpu_use_fusion_emitters=false" not in flags
    assert {FAST_COMPILATION[0], FAST_COMPILATION[2]} <= set(flags.split())
