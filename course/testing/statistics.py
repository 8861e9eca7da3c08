"""Statistical tests for the random parts of the course (sampling).

The chi-square law is computed here, in closed form, rather than taken from
scipy: importing ``scipy.special`` costs about 0.2 s of every run of the
generation exercise's visible tests, the student's edit-rerun loop.
"""

from __future__ import annotations

import math

import numpy as np


def chi_square_survival(statistic: float, dof: int) -> float:
    """``P(X >= statistic)`` for ``X`` chi-square distributed with ``dof`` degrees of freedom.

    The closed form for a whole number of degrees of freedom (Abramowitz and
    Stegun 26.4.4 and 26.4.5): with ``h = statistic / 2``, the sum of
    ``exp(-h) h**a / gamma(a + 1)`` over ``a = 0, 1, ... < dof / 2`` (even
    ``dof``) or ``a = 1/2, 3/2, ... < dof / 2`` plus ``erfc(sqrt(h))`` (odd
    ``dof``). Each term is computed through its logarithm, so none overflows.

    Args:
      statistic: the observed statistic, a float.
      dof: the degrees of freedom, an int ``>= 1``.

    Raises:
      ValueError: ``dof`` is not an int ``>= 1``.
    """
    if not isinstance(dof, int) or dof < 1:
        raise ValueError(f"dof: expected an int >= 1, got {dof!r}")
    half = statistic / 2
    if half <= 0:
        return 1.0
    odd = dof % 2
    total = math.erfc(math.sqrt(half)) if odd else 0.0
    for i in range(dof // 2):
        a = i + 0.5 * odd
        total += math.exp(a * math.log(half) - half - math.lgamma(a + 1))
    return min(total, 1.0)


def chi_square_p_value(counts, probabilities) -> float:
    """Pearson's chi-square goodness-of-fit p-value of ``counts`` under ``probabilities``.

    Args:
      counts: observed counts per category, ``int[K]``, ``K >= 2``.
      probabilities: the categories' probabilities, ``float[K]``, all positive;
        they are normalized to sum to one.

    Returns:
      The probability, under the null hypothesis, of a statistic at least as
      large as the observed one (``K - 1`` degrees of freedom). A test that
      fails when it is below ``alpha`` raises a false alarm with probability ``alpha``.

    Raises:
      ValueError: the two are not vectors of the same length ``>= 2``, or a
        probability is not positive.
    """
    counts = np.asarray(counts, np.float64)
    probabilities = np.asarray(probabilities, np.float64)
    if counts.shape != probabilities.shape or counts.ndim != 1 or len(counts) < 2:
        raise ValueError(f"counts and probabilities: expected two vectors of the same length >= 2, got {counts.shape} and {probabilities.shape}")
    if (probabilities <= 0).any():
        raise ValueError("probabilities: every category needs a positive probability")
    expected = counts.sum() * probabilities / probabilities.sum()
    statistic = ((counts - expected) ** 2 / expected).sum()
    return chi_square_survival(float(statistic), len(counts) - 1)
