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
    raise NotImplementedError('not implemented yet: implement sinusoidal_positional_encoding in exercises/positional_encoding/positional_encoding.py (hint: build positions [seq_len, 1] and frequencies [d_model // 2]; write sin into columns 0::2 and cos into 1::2)')
