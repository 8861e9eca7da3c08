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

TOY = {"vocab_size": 11, "d_hidden": 16, "max_seq_len": 12}  # the BigramMLP of the visible tests and fixtures


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


class _CallCounter:
    """A mutable count shared by a module and every copy ``nnx.merge`` makes of it (a static attribute, kept by reference)."""

    def __init__(self):
        self.calls = 0


class PrefixMeanLM(nnx.Module):
    """``logits[:, t] = out(tanh(hidden(mean(embed(tokens[:, :t + 1])))))``: causal, and every earlier token counts.

    Unlike :class:`BigramMLP`, its logits depend on the whole window it reads,
    so a generation loop that reads the wrong tokens (a window that does not
    slide, or slides by one too many) gives other tokens. It counts how often
    its ``__call__`` runs as Python (:meth:`call_count`): once per trace under
    ``jax.jit`` and once per call outside it, which tells a loop compiled once
    from one that runs the model again for every token.

    Args:
      vocab_size: number of token ids.
      d_hidden: width of the embedding and hidden layer.
      max_seq_len: the context length; longer inputs raise ``ValueError``.
      rngs: random streams for the initial weights (keyword-only).
    """

    def __init__(self, vocab_size: int, d_hidden: int, max_seq_len: int, *, rngs: nnx.Rngs):
        self.max_seq_len = max_seq_len
        self.counter = _CallCounter()
        self.embed = nnx.Embed(vocab_size, d_hidden, rngs=rngs)
        self.hidden = nnx.Linear(d_hidden, d_hidden, rngs=rngs)
        self.out = nnx.Linear(d_hidden, vocab_size, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """``int[B, T]`` (``T <= max_seq_len``) to ``float32[B, T, vocab_size]``."""
        if tokens.shape[-1] > self.max_seq_len:
            raise ValueError(f"tokens: {tokens.shape[-1]} positions are longer than max_seq_len={self.max_seq_len}")
        self.counter.calls += 1
        embedded = self.embed(tokens)  # [B, T, d]
        prefix_mean = jnp.cumsum(embedded, axis=-2) / jnp.arange(1, tokens.shape[-1] + 1, dtype=jnp.float32)[:, None]
        return self.out(jnp.tanh(self.hidden(prefix_mean)))

    def call_count(self) -> int:
        """How many times ``__call__`` has run as Python (traces and plain calls)."""
        return self.counter.calls
