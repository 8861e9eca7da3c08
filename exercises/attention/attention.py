"""Scaled dot-product attention and the causal mask.

Attention lets every query position read a weighted average of the value
vectors, weighted by how well the query matches each key::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

A mask removes some keys from a query's view: ``True`` means *may attend*.
A language model reads left to right, so position ``i`` may only see positions
``j <= i``: that is the causal mask.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def causal_mask(seq_len: int) -> jax.Array:
    """The causal (lower-triangular) attention mask.

    Args:
      seq_len: number of positions, a positive int (static under ``jax.jit``).

    Returns:
      ``bool[seq_len, seq_len]`` with ``mask[i, j]`` True iff ``j <= i``:
      query ``i`` may attend to key ``j`` only at or before its own position.

    Raises:
      ValueError: ``seq_len`` is not positive.
    """
    raise NotImplementedError('not implemented yet: implement causal_mask in exercises/attention/attention.py (hint: jnp.tril of a square of ones, as booleans)')


def scaled_dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Scaled dot-product attention.

    ``weights = softmax(query @ key^T / sqrt(d_k))`` over the key axis, with
    masked-out keys given weight exactly zero; ``output = weights @ value``.

    Args:
      query: ``float[..., T_q, d_k]``.
      key: ``float[..., T_k, d_k]``.
      value: ``float[..., T_k, d_v]``.
      mask: optional ``bool``, broadcastable to ``[..., T_q, T_k]``; ``True``
        means the query may attend to that key. ``None`` attends everywhere.

    The leading dimensions ``...`` (batch, heads, ...) of ``query``, ``key`` and
    ``value`` are the same. Works for float32 and bfloat16 inputs; the outputs
    have the inputs' dtype. A query row whose keys are *all* masked has no
    meaningful answer: its outputs are undefined and never graded.

    Returns:
      ``(output, weights)``: ``output: float[..., T_q, d_v]`` and
      ``weights: float[..., T_q, T_k]``, each row of ``weights`` summing to one.

    Raises:
      ValueError: an input has fewer than two dimensions, the ``d_k`` of
        ``query`` and ``key`` differ, or ``key`` and ``value`` have different
        numbers of positions.
    """
    raise NotImplementedError('not implemented yet: implement scaled_dot_product_attention in exercises/attention/attention.py (hint: scores = q @ k^T / sqrt(d_k) with jnp.swapaxes; put -inf where mask is False; jax.nn.softmax over the last axis)')
