"""Helpers for the visible tests: fixtures, tolerances and teaching comparisons.

The visible tests compare a student's outputs with committed fixtures
(``exercises/<name>/fixtures.npz``, made from the reference by ``course
fixtures``) and explain a mismatch in words: what was compared, the shapes and
dtypes, where the largest error is and how large it is. The hidden grader
(``graders/engine/compare.py``) uses the same tolerances and messages, without the
expected values.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from course.testing.compilation_cache import use_compilation_cache  # noqa: F401  (exercises/conftest.py imports it from here)
from course.testing.statistics import chi_square_p_value  # noqa: F401  (the tests import it from here)

# Every tolerance of the course, stated once, per kind of quantity and dtype:
# the visible tests use "output"; the grader compares outputs and gradients
# (vector-Jacobian products). Float32 tolerances are wide enough for any
# correct order of operations (einsum or matmul, -inf or a large negative
# fill, log_softmax or a hand-written logsumexp); bfloat16 keeps about three
# significant digits, and its gradients pass through more rounded steps.
TOLERANCES: dict[str, dict[str, dict[str, float]]] = {
    "output": {"float32": {"rtol": 1e-4, "atol": 1e-5}, "bfloat16": {"rtol": 3e-2, "atol": 3e-2}},
    "gradient": {"float32": {"rtol": 2e-4, "atol": 2e-5}, "bfloat16": {"rtol": 6e-2, "atol": 6e-2}},
}

FIXTURES_FILE = "fixtures.npz"


def load_fixtures(test_file: str | Path) -> dict[str, np.ndarray]:
    """The fixtures that sit beside a test module (``fixtures.npz``).

    Args:
      test_file: the test module's ``__file__``; the path is resolved against
        it, never against the working directory.
    """
    path = Path(test_file).resolve().parent / FIXTURES_FILE
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def tolerance(dtype, kind: str = "output") -> dict[str, float]:
    """``rtol`` and ``atol`` for comparing arrays of ``dtype`` holding a quantity of ``kind``.

    Raises:
      KeyError: ``kind`` is not one of :data:`TOLERANCES`.
    """
    if kind not in TOLERANCES:
        raise KeyError(f"kind: expected one of {sorted(TOLERANCES)}, got {kind!r}")
    return TOLERANCES[kind]["bfloat16" if jnp.dtype(dtype) == jnp.bfloat16 else "float32"]


def _describe(x: np.ndarray) -> str:
    return f"{x.dtype}[{', '.join(map(str, x.shape))}]"


def describe_mismatch(
    actual, expected, *, what: str, rtol: float | None = None, atol: float | None = None,
    kind: str = "output", reveal: bool = True, tolerance_of=None,
) -> str | None:
    """Why ``actual`` does not match ``expected``, in words; ``None`` when it does.

    Checks, in order: that ``actual`` is an array, its shape, that it has no NaN
    or infinity where ``expected`` has none, and its values within
    ``|actual - expected| <= atol + rtol * |expected|`` (defaults from
    :data:`TOLERANCES` for ``kind`` and ``actual``'s dtype).

    Args:
      actual: the student's result (array-like).
      expected: the expected values (array-like).
      what: names the compared quantity in the message, e.g. ``"weights"``.
      kind: the kind of quantity, a key of :data:`TOLERANCES`.
      reveal: name the values at the worst index; ``False`` for hidden
        expected values (the grader), which then never appear in the message.
      tolerance_of: take the tolerance of this dtype instead of ``actual``'s
        (a float32 result computed from bfloat16 inputs).
    """
    if not isinstance(actual, jax.Array | np.ndarray | np.generic):
        return f"{what}: expected an array, got {type(actual).__name__}"
    tol = tolerance(actual.dtype if tolerance_of is None else tolerance_of, kind)
    rtol = tol["rtol"] if rtol is None else rtol
    atol = tol["atol"] if atol is None else atol
    got = np.asarray(jnp.asarray(actual, dtype=jnp.float32) if actual.dtype == jnp.bfloat16 else actual)
    want = np.asarray(expected)
    if got.shape != want.shape:
        return f"{what}: expected shape {want.shape}, got {got.shape}"
    if got.dtype == bool or want.dtype == bool:
        return _boolean_mismatch(got, want, what=what, reveal=reveal)
    return _numeric_mismatch(got, want, what=what, rtol=rtol, atol=atol, reveal=reveal)


def _boolean_mismatch(got: np.ndarray, want: np.ndarray, *, what: str, reveal: bool) -> str | None:
    """Counts the entries of two arrays of one shape that differ, and names the first; ``None`` when none does."""
    wrong = np.argwhere(got != want)
    if not len(wrong):
        return None
    index = tuple(int(i) for i in wrong[0])
    values = f": got {got[index]}, expected {want[index]}" if reveal else ""
    return f"{what}: {len(wrong)} of {got.size} entries differ; first at index {index}{values}"


def _numeric_mismatch(got: np.ndarray, want: np.ndarray, *, what: str, rtol: float, atol: float,
                      reveal: bool) -> str | None:
    """Names unexpected NaNs or infinities, else the values outside the tolerance and the largest error; ``None`` when all match.

    Both arrays have one shape; they are compared in float64.
    """
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    bad_nonfinite = ~np.isfinite(got64) & np.isfinite(want64)
    if bad_nonfinite.any():
        index = tuple(int(i) for i in np.argwhere(bad_nonfinite)[0])
        return (
            f"{what}: {int(bad_nonfinite.sum())} entries are NaN or infinite where finite "
            f"values were expected; first at index {index}: got {got64[index]}"
        )
    error = np.abs(got64 - want64)
    allowed = atol + rtol * np.abs(want64)
    # Where the expected value is infinite or NaN, only the same value (NaN for NaN) matches.
    same = (got64 == want64) | (np.isnan(got64) & np.isnan(want64))
    wrong = np.where(np.isfinite(want64), ~(error <= allowed) & ~same, ~same)
    if not wrong.any():
        return None
    index = np.unravel_index(np.argmax(np.where(wrong, error, -1.0)), error.shape)
    index = tuple(int(i) for i in index)
    values = f": got {got64[index]:.6g}, expected {want64[index]:.6g}" if reveal else ""
    return (
        f"{what}: {int(wrong.sum())} of {got.size} values differ from the expected ones "
        f"({_describe(got)}). Largest error {error[index]:.3g} at index {index}{values} "
        f"(allowed: atol={atol:g} + rtol={rtol:g} * |expected|)"
    )


def assert_close(actual, expected, *, what: str, rtol: float | None = None, atol: float | None = None) -> None:
    """Fails with a teaching message unless ``actual`` matches ``expected`` (see :func:`describe_mismatch`)."""
    __tracebackhide__ = True
    message = describe_mismatch(actual, expected, what=what, rtol=rtol, atol=atol)
    if message is not None:
        raise AssertionError(message)


def assert_shape_dtype(actual, shape: tuple[int, ...], dtype, *, what: str) -> None:
    """Fails with a teaching message unless ``actual`` has ``shape`` and ``dtype``."""
    __tracebackhide__ = True
    if not hasattr(actual, "shape") or not hasattr(actual, "dtype"):
        raise AssertionError(f"{what}: expected an array, got {type(actual).__name__}")
    if tuple(actual.shape) != tuple(shape):
        raise AssertionError(f"{what}: expected shape {tuple(shape)}, got {tuple(actual.shape)}")
    if jnp.dtype(actual.dtype) != jnp.dtype(dtype):
        raise AssertionError(f"{what}: expected dtype {jnp.dtype(dtype)}, got {jnp.dtype(actual.dtype)}")
