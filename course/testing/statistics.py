"""Statistical tests for the random parts of the course (sampling), on top of scipy.special."""

from __future__ import annotations

import numpy as np


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
    # Imported here, and not scipy.stats: that costs about a second of every
    # visible-test run, and only the sampling tests need the chi-square law.
    from scipy.special import chdtrc  # chdtrc(k, x) = P(chi-square with k degrees of freedom >= x)

    expected = counts.sum() * probabilities / probabilities.sum()
    statistic = ((counts - expected) ** 2 / expected).sum()
    return float(chdtrc(len(counts) - 1, statistic))
