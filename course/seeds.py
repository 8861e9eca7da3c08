"""Seeds of the course's random inputs: one range, checked in one place."""

from __future__ import annotations

import secrets

SEED_LIMIT = 2**32  # numpy's generators and jax.random.key both take any seed below this


def check_seed(seed: object, *, name: str = "seed") -> int:
    """``seed`` itself when it is an int in ``[0, 2**32)``.

    Raises:
      ValueError: it is not; the message names ``name``.
    """
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < SEED_LIMIT):
        raise ValueError(f"{name}: expected an int in [0, 2**32), got {seed!r}")
    return seed


def draw_seed() -> int:
    """A fresh seed from the operating system's randomness (recorded wherever it is used)."""
    return secrets.randbelow(SEED_LIMIT)
