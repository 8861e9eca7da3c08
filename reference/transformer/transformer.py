"""The transformer's building blocks as Flax NNX modules.

A decoder block ("Attention Is All You Need", section 3, in the pre-norm
arrangement of GPT-2) refines every position's vector in two steps, each added
back to its input (a residual connection)::

    x = x + MultiHeadAttention(LayerNorm(x))   # positions exchange information
    x = x + FeedForward(LayerNorm(x))          # each position thinks on its own

The parameter structure (the names of the submodules and their layers) is
part of the contract: the grader copies reference weights into your modules by
these names, so keep them exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from exercises.attention.attention import scaled_dot_product_attention


class MultiHeadAttention(nnx.Module):
    """Multi-head attention with learned projections.

    ``query``, ``key``, ``value`` and ``out`` are ``nnx.Linear(d_model, d_model)``
    layers (with biases). The projected queries, keys and values are split into
    ``num_heads`` heads of size ``d_head = d_model // num_heads``: feature
    ``h * d_head + i`` belongs to head ``h`` (a reshape of the last axis to
    ``[num_heads, d_head]``). Each head attends with
    :func:`exercises.attention.attention.scaled_dot_product_attention`, the heads'
    outputs are concatenated back in the same order, and ``out`` mixes them.

    Args:
      d_model: model width, divisible by ``num_heads``.
      num_heads: number of heads.
      rngs: random streams for the initial weights (keyword-only).

    Raises:
      ValueError: ``d_model`` is not divisible by ``num_heads``.
    """

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs):
        # BEGIN SOLUTION (hint: check d_model % num_heads, keep num_heads, and create four nnx.Linear(d_model, d_model, rngs=rngs) named query, key, value, out)
        if num_heads <= 0 or d_model % num_heads:
            raise ValueError(
                f"d_model and num_heads: d_model must be divisible by num_heads, got "
                f"d_model={d_model} and num_heads={num_heads}"
            )
        self.num_heads = num_heads
        self.query = nnx.Linear(d_model, d_model, rngs=rngs)
        self.key = nnx.Linear(d_model, d_model, rngs=rngs)
        self.value = nnx.Linear(d_model, d_model, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, rngs=rngs)
        # END SOLUTION

    def __call__(
        self, x: jax.Array, context: jax.Array | None = None, mask: jax.Array | None = None
    ) -> jax.Array:
        """Attends from ``x`` to ``context`` (to ``x`` itself when ``context`` is None).

        Args:
          x: ``float[..., T_q, d_model]``, the queries' inputs.
          context: optional ``float[..., T_k, d_model]``, the keys' and values'
            inputs (cross-attention); ``None`` for self-attention.
          mask: optional ``bool``, broadcastable to ``[..., num_heads, T_q, T_k]``
            (a ``[T_q, T_k]`` mask applies to every head); ``True`` = may attend.

        Returns:
          ``float[..., T_q, d_model]``.
        """
        # BEGIN SOLUTION (hint: project, reshape [..., T, d_model] -> [..., T, H, d_head] and swap to [..., H, T, d_head], attend, swap back, merge heads, apply out)
        context = x if context is None else context

        def split_heads(y: jax.Array) -> jax.Array:
            y = y.reshape(*y.shape[:-1], self.num_heads, -1)  # [..., T, H, d_head]
            return jnp.swapaxes(y, -2, -3)  # [..., H, T, d_head]

        q = split_heads(self.query(x))
        k = split_heads(self.key(context))
        v = split_heads(self.value(context))
        heads, _ = scaled_dot_product_attention(q, k, v, mask)  # [..., H, T_q, d_head]
        heads = jnp.swapaxes(heads, -2, -3)  # [..., T_q, H, d_head]
        return self.out(heads.reshape(*heads.shape[:-2], -1))  # [..., T_q, d_model]
        # END SOLUTION


class FeedForward(nnx.Module):
    """The position-wise feed-forward network: ``down(gelu(up(x)))``.

    ``up`` is ``nnx.Linear(d_model, d_ff)``, ``down`` is ``nnx.Linear(d_ff, d_model)``
    and the activation is ``jax.nn.gelu`` with its default (tanh) approximation.

    Args:
      d_model: model width.
      d_ff: hidden width, usually ``4 * d_model``.
      rngs: random streams for the initial weights (keyword-only).
    """

    def __init__(self, d_model: int, d_ff: int, *, rngs: nnx.Rngs):
        # BEGIN SOLUTION (hint: two nnx.Linear layers named up and down)
        self.up = nnx.Linear(d_model, d_ff, rngs=rngs)
        self.down = nnx.Linear(d_ff, d_model, rngs=rngs)
        # END SOLUTION

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``float[..., d_model]`` to ``float[..., d_model]``, each position on its own."""
        # BEGIN SOLUTION (hint: self.down(jax.nn.gelu(self.up(x))))
        return self.down(jax.nn.gelu(self.up(x)))
        # END SOLUTION


class DecoderBlock(nnx.Module):
    """A pre-norm transformer decoder block.

    ``x + attn(ln1(x), mask=mask)``, then ``+ ffn(ln2(.))``: each sublayer reads
    a normalized copy of its input and adds its result to the unnormalized
    input (the residual stream). Submodules: ``ln1`` and ``ln2``
    (``nnx.LayerNorm(d_model)`` with its defaults), ``attn``
    (:class:`MultiHeadAttention`) and ``ffn`` (:class:`FeedForward`).

    Args:
      d_model: model width, divisible by ``num_heads``.
      num_heads: number of attention heads.
      d_ff: the feed-forward network's hidden width.
      rngs: random streams for the initial weights (keyword-only).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, rngs: nnx.Rngs):
        # BEGIN SOLUTION (hint: create ln1, attn, ln2, ffn in that order)
        self.ln1 = nnx.LayerNorm(d_model, rngs=rngs)
        self.attn = MultiHeadAttention(d_model, num_heads, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d_model, rngs=rngs)
        self.ffn = FeedForward(d_model, d_ff, rngs=rngs)
        # END SOLUTION

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Applies the block.

        Args:
          x: ``float[..., T, d_model]``.
          mask: optional ``bool`` attention mask, as for :class:`MultiHeadAttention`
            (a language model passes the causal mask).

        Returns:
          ``float[..., T, d_model]``.
        """
        # BEGIN SOLUTION (hint: two residual updates: x = x + self.attn(self.ln1(x), mask=mask), then the same with ln2 and ffn)
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.ffn(self.ln2(x))
        # END SOLUTION
