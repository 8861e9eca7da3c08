"""Helpers for the visible tests: fixtures, tolerances and teaching comparisons.

The visible tests compare a student's outputs with committed fixtures
(``exercises/<name>/fixtures.npz``, made from the reference by ``course
fixtures``) and explain a mismatch in words: what was compared, the shapes and
dtypes, where the largest error is and how large it is. The hidden grader
(``graders/engine/compare.py``) uses the same tolerances and messages, without the
expected values.

The fixtures also hold the reference's outputs under each known mistake of
``course.mistakes`` (``<key>.mistake.<name>`` beside ``<key>``): when a
student's values match one, the message names it with the catalogue's hint,
the words the grader uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from course import mistakes as catalogue
from course.testing.compilation_cache import use_compilation_cache  # noqa: F401  (exercises/conftest.py imports it from here)
from course.testing.statistics import chi_square_p_value  # noqa: F401  (the tests import it from here)

# Every tolerance of the course, stated once, per kind of quantity and dtype:
# the visible tests use "output"; the grader compares outputs and gradients
# (vector-Jacobian products). Float32 tolerances are wide enough for any
# correct order of operations (einsum or matmul, -inf or a large negative
# fill, log_softmax or a hand-written logsumexp); bfloat16 keeps about three
# significant digits, and its gradients pass through more rounded steps.
# The float32 tolerances assume float32 matrix products. On GPUs JAX's default
# precision multiplies float32 matrices in TF32 (about 3 significant digits, errors
# near 1e-3), which no float32 tolerance here admits; so every float32 comparison of
# the course, visible tests and grader alike (both sides of it), runs at this
# precision, on CPUs (where it changes nothing) and GPUs alike.
MATMUL_PRECISION = "highest"
TOLERANCES: dict[str, dict[str, dict[str, float]]] = {
    "output": {"float32": {"rtol": 1e-4, "atol": 1e-5}, "bfloat16": {"rtol": 3e-2, "atol": 3e-2}},
    "gradient": {"float32": {"rtol": 2e-4, "atol": 2e-5}, "bfloat16": {"rtol": 6e-2, "atol": 6e-2}},
}



def use_full_float32_matmuls() -> None:
    """Makes :data:`MATMUL_PRECISION` JAX's default for the rest of the process (see :data:`TOLERANCES`)."""
    jax.config.update("jax_default_matmul_precision", MATMUL_PRECISION)


FIXTURES_FILE = "fixtures.npz"
KNOWN_MISTAKE = "this matches a known mistake: {hint}"


def load_fixtures(test_file: str | Path) -> dict[str, np.ndarray]:
    """The fixtures that sit beside a test module (``fixtures.npz``).

    Args:
      test_file: the test module's ``__file__``; the path is resolved against
        it, never against the working directory.
    """
    path = Path(test_file).resolve().parent / FIXTURES_FILE
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def mistake_key(key: str, name: str) -> str:
    """The fixture name of ``key``'s values under the catalogued mistake ``name``."""
    return f"{key}.mistake.{name}"


def stored_mistakes(fixtures: Mapping[str, np.ndarray], key: str) -> dict[str, np.ndarray]:
    """``{hint: values}``: the reference's values of fixture ``key`` under each known mistake stored with it.

    Only the mistakes whose values differ from ``fixtures[key]`` are stored
    (``course fixtures``), so a mistake that a case cannot show is absent.
    """
    prefix = mistake_key(key, "")
    return {catalogue.hint(name[len(prefix):]): values for name, values in fixtures.items() if name.startswith(prefix)}


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
    kind: str = "output", reveal: bool = True, tolerance_of=None, dtype=None,
) -> str | None:
    """Why ``actual`` does not match ``expected``, in words; ``None`` when it does.

    Checks, in order: that ``actual`` is an array, that its dtype is the
    expected one, its shape, that it has no NaN or infinity where ``expected``
    has none, and its values within ``|actual - expected| <= atol + rtol *
    |expected|`` (defaults from :data:`TOLERANCES` for ``kind`` and the
    expected dtype). The tolerance never follows ``actual``'s dtype: a
    bfloat16 answer to a float32 question fails on its dtype, not at
    bfloat16's tolerance.

    Args:
      actual: the student's result (array-like).
      expected: the expected values (array-like).
      what: names the compared quantity in the message, e.g. ``"weights"``.
      kind: the kind of quantity, a key of :data:`TOLERANCES`.
      reveal: name the values at the worst index; ``False`` for hidden
        expected values (the grader), which then never appear in the message.
      tolerance_of: take the tolerance of this dtype instead of the expected
        one (a float32 result computed from bfloat16 inputs).
      dtype: the expected dtype when ``expected`` holds its values in another
        (fixtures store bfloat16 values as float32); default ``expected``'s.
    """
    if not isinstance(actual, jax.Array | np.ndarray | np.generic):
        return f"{what}: expected an array, got {type(actual).__name__}"
    want = np.asarray(expected)
    wanted = jnp.dtype(want.dtype if dtype is None else dtype)
    if jnp.dtype(actual.dtype) != wanted:
        return f"{what}: expected dtype {wanted.name}, got {jnp.dtype(actual.dtype).name}"
    got = np.asarray(actual)
    if got.shape != want.shape:
        return f"{what}: expected shape {want.shape}, got {got.shape}"
    if wanted == bool:
        return _boolean_mismatch(got, want, what=what, reveal=reveal)
    tol = tolerance(wanted if tolerance_of is None else tolerance_of, kind)
    rtol = tol["rtol"] if rtol is None else rtol
    atol = tol["atol"] if atol is None else atol
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


def assert_close(actual, expected, *, what: str, rtol: float | None = None, atol: float | None = None,
                 mistakes: Mapping[str, object] | None = None, dtype=None) -> None:
    """Fails with a teaching message unless ``actual`` matches ``expected`` (see :func:`describe_mismatch`).

    Args:
      mistakes: ``{hint: values}``, the expected values as if a known mistake
        had been made (:func:`stored_mistakes`); on a mismatch, the first that
        ``actual`` matches, within the same tolerance, is named in the message.
      dtype: the expected dtype when the fixture stores it in another (see
        :func:`describe_mismatch`), for ``expected`` and ``mistakes`` alike.
    """
    __tracebackhide__ = True
    message = describe_mismatch(actual, expected, what=what, rtol=rtol, atol=atol, dtype=dtype)
    if message is None:
        return
    hint = next((hint for hint, wrong in (mistakes or {}).items()
                 if describe_mismatch(actual, wrong, what=what, rtol=rtol, atol=atol, dtype=dtype) is None), None)
    raise AssertionError(message + ("; " + KNOWN_MISTAKE.format(hint=hint) if hint else ""))


def assert_shape_dtype(actual, shape: tuple[int, ...], dtype, *, what: str) -> None:
    """Fails with a teaching message unless ``actual`` has ``shape`` and ``dtype``."""
    __tracebackhide__ = True
    if not hasattr(actual, "shape") or not hasattr(actual, "dtype"):
        raise AssertionError(f"{what}: expected an array, got {type(actual).__name__}")
    if tuple(actual.shape) != tuple(shape):
        raise AssertionError(f"{what}: expected shape {tuple(shape)}, got {tuple(actual.shape)}")
    if jnp.dtype(actual.dtype) != jnp.dtype(dtype):
        raise AssertionError(f"{what}: expected dtype {jnp.dtype(dtype)}, got {jnp.dtype(actual.dtype)}")


def sampling_distribution(logits, temperature: float = 1.0, top_k: int | None = None) -> np.ndarray:
    """The distribution ``sample_next_token`` samples from: ``softmax(logits / temperature)`` over the top ``top_k``.

    Args:
      logits: ``float[..., V]``.
      temperature: ``>= 0``; 0 puts all the probability on the largest logit.
      top_k: ``None`` (every token) or the number of largest logits kept.

    Returns:
      ``float64[..., V]``, each row summing to one.
    """
    z = np.asarray(logits, np.float64)
    if temperature == 0:
        return np.eye(z.shape[-1])[np.argmax(z, axis=-1)]
    z = z / temperature
    if top_k is not None:
        z = np.where(z >= np.sort(z, axis=-1)[..., -top_k:][..., :1], z, -np.inf)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def mistaken_distributions(logits, temperature: float = 1.0, top_k: int | None = None) -> dict[str, np.ndarray]:
    """``{hint: distribution}``: what ``sample_next_token`` samples from under each known mistake of ``course.mistakes``.

    A sampling mistake is the reference's sampler given other arguments, so
    the same mistake applied to :func:`sampling_distribution` in the
    sampler's place gives its distribution. Mistakes that do not change the
    distribution for these arguments are left out.
    """
    right = sampling_distribution(logits, temperature, top_k)
    probe = SimpleNamespace(sample_next_token=lambda z, key, t=1.0, k=None: sampling_distribution(z, t, k))
    wrong = {m.hint: m.wrong(probe)(logits, None, temperature, top_k) for m in catalogue.of("generation", "sample_next_token")}
    return {hint: p for hint, p in wrong.items() if not np.allclose(p, right)}


def fit_p_value(counts, probabilities) -> float:
    """The chi-square p-value of ``counts`` under ``probabilities``, which may hold zeros.

    0 when a token of probability 0 was drawn; 1 when one token holds all the
    probability and every draw is that token.
    """
    counts, probabilities = np.asarray(counts), np.asarray(probabilities)
    possible = probabilities > 0
    if counts[~possible].any():
        return 0.0
    if possible.sum() == 1:
        return 1.0
    return chi_square_p_value(counts[possible], probabilities[possible])


def assert_samples_follow(tokens, probabilities, *, what: str, false_alarm: float,
                          mistakes: Mapping[str, np.ndarray] | None = None) -> None:
    """Fails unless the token ids ``tokens`` look drawn from ``probabilities`` (``float[V]``).

    A chi-square goodness-of-fit test that fails a right sampler with
    probability ``false_alarm``. On a failure, the first known mistake
    (``{hint: probabilities}``, :func:`mistaken_distributions`) whose
    distribution the samples fit is named.
    """
    __tracebackhide__ = True
    probabilities = np.asarray(probabilities)
    tokens = np.asarray(tokens).reshape(-1)
    if tokens.min() < 0 or tokens.max() >= len(probabilities):
        raise AssertionError(f"{what}: token ids outside [0, {len(probabilities)}): {sorted(set(tokens.tolist()))}")
    counts = np.bincount(tokens, minlength=len(probabilities))
    p = fit_p_value(counts, probabilities)
    if p > false_alarm:
        return
    impossible = counts[probabilities == 0].sum()
    message = (f"{what}: {impossible} of {len(tokens)} samples are tokens of probability 0 (outside the top k)" if impossible
               else f"{what}: sample counts {counts.tolist()} are unlikely under softmax(logits / temperature) (p = {p:.2g}): "
                    f"expected about {np.round(probabilities * len(tokens)).astype(int).tolist()}")
    hint = next((hint for hint, q in (mistakes or {}).items() if fit_p_value(counts, q) > false_alarm), None)
    raise AssertionError(message + ("; " + KNOWN_MISTAKE.format(hint=hint) if hint else ""))
