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
    # BEGIN SOLUTION (hint: jnp.tril of a square of ones, as booleans)
    if seq_len <= 0:
        raise ValueError(f"seq_len: expected a positive int, got {seq_len}")
    return jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))
    # END SOLUTION


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
    # BEGIN SOLUTION (hint: scores = q @ k^T / sqrt(d_k) with jnp.swapaxes; put -inf where mask is False; jax.nn.softmax over the last axis)
    for name, x in (("query", query), ("key", key), ("value", value)):
        if x.ndim < 2:
            raise ValueError(f"{name}: expected shape [..., T, d], got {x.shape}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query and key: d_k must match, got query {query.shape} and key {key.shape}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value: T_k must match, got key {key.shape} and value {value.shape}"
        )
    # A Python float is weakly typed, so the division keeps bfloat16 inputs bfloat16.
    scores = query @ jnp.swapaxes(key, -1, -2) / math.sqrt(query.shape[-1])  # [..., T_q, T_k]
    if mask is not None:
        scores = jnp.where(mask, scores, -jnp.inf)
    # The softmax runs in float32 so bfloat16 inputs keep an accurate normalization.
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1)
    if mask is not None:
        # where() again so that fully masked rows are zero rather than NaN.
        weights = jnp.where(mask, weights, 0.0)
    weights = weights.astype(query.dtype)
    return weights @ value, weights
    # END SOLUTION
