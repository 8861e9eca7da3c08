"""Sinusoidal positional encoding ("Attention Is All You Need", section 3.5).

Attention treats its inputs as a set: without extra information it cannot tell
which token came first. The sinusoidal encoding adds to each token's embedding a
vector that depends only on its position ``p``: pairs of dimensions rotate at
geometrically spaced frequencies, so nearby positions get similar vectors and
the offset between two positions is a linear function of their encodings.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sinusoidal_positional_encoding(
    seq_len: int, d_model: int, base: float = 10000.0
) -> jax.Array:
    """The sinusoidal positional encoding table.

    For position ``p`` and pair index ``i`` (``0 <= i < d_model / 2``)::

        PE[p, 2i]     = sin(p / base ** (2i / d_model))
        PE[p, 2i + 1] = cos(p / base ** (2i / d_model))

    Sines and cosines are *interleaved* (even columns sine, odd columns cosine),
    not concatenated.

    Args:
      seq_len: number of positions, a positive int (static under ``jax.jit``).
      d_model: encoding width, a positive even int (static under ``jax.jit``).
      base: the wavelength scale, a positive float; 10000 in the paper.

    Returns:
      ``float32[seq_len, d_model]``.

    Raises:
      ValueError: ``seq_len`` or ``d_model`` is not positive, or ``d_model`` is odd.
    """
    # BEGIN SOLUTION (hint: build positions [seq_len, 1] and frequencies [d_model // 2]; write sin into columns 0::2 and cos into 1::2)
    if seq_len <= 0:
        raise ValueError(f"seq_len: expected a positive int, got {seq_len}")
    if d_model <= 0 or d_model % 2:
        raise ValueError(f"d_model: expected a positive even int, got {d_model}")
    positions = jnp.arange(seq_len, dtype=jnp.float32)[:, None]  # [T, 1]
    exponents = jnp.arange(0, d_model, 2, dtype=jnp.float32) / d_model  # [d/2]
    angles = positions / jnp.power(jnp.float32(base), exponents)  # [T, d/2]
    # Stacking on a new last axis then flattening interleaves sin, cos, sin, cos...
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(seq_len, d_model)
    # END SOLUTION
