"""A tiny language model for tests: it predicts the next token from the current one.

``BigramMLP`` has the interface of :class:`course.model.TransformerLM`
(``int[B, T]`` tokens to ``float[B, T, V]`` logits, a ``max_seq_len``
attribute) but none of its exercise code, so the training and generation
exercises can be tested before the transformer is written.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class BigramMLP(nnx.Module):
    """``logits[:, t] = out(tanh(hidden(embed(tokens[:, t]))))``: each position on its own.

    Args:
      vocab_size: number of token ids.
      d_hidden: width of the embedding and hidden layer.
      max_seq_len: the context length it reports (it could read any length).
      rngs: random streams for the initial weights (keyword-only).
    """

    def __init__(self, vocab_size: int, d_hidden: int, max_seq_len: int, *, rngs: nnx.Rngs):
        self.max_seq_len = max_seq_len
        self.embed = nnx.Embed(vocab_size, d_hidden, rngs=rngs)
        self.hidden = nnx.Linear(d_hidden, d_hidden, rngs=rngs)
        self.out = nnx.Linear(d_hidden, vocab_size, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """``int[B, T]`` to ``float32[B, T, vocab_size]``."""
        return self.out(jnp.tanh(self.hidden(self.embed(tokens))))
