"""Text generation: sampling one token, then many.

A language model gives logits for the next token. *Sampling* turns them into a
choice: the most likely token (greedy), or a random draw from
``softmax(logits / temperature)``; a low temperature sharpens the distribution,
a high one flattens it, and top-k keeps only the ``k`` most likely tokens.
*Generation* repeats this, appending each new token to the input.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx


def sample_next_token(
    logits: jax.Array, key: jax.Array, temperature: float = 1.0, top_k: int | None = None
) -> jax.Array:
    """Chooses a token from each row of logits.

    - ``temperature == 0``: the argmax (greedy; ``key`` is unused).
    - otherwise: a sample from ``softmax(logits / temperature)``, where with
      ``top_k`` set only the ``top_k`` largest logits of each row keep their
      value and every other token gets probability zero. Ties at the
      ``top_k``-th largest logit are all kept: every token whose logit is at
      least the ``top_k``-th largest may be drawn, so more than ``top_k``
      tokens can remain (``jax.lax.top_k`` gives that value).

    Args:
      logits: ``float[..., V]``.
      key: a ``jax.random`` key.
      temperature: a float ``>= 0`` (static under ``jax.jit``).
      top_k: ``None`` (all tokens) or an int in ``[1, V]`` (static).

    Returns:
      ``int32[...]``, token ids in ``[0, V)``.

    Raises:
      ValueError: ``temperature`` is negative or ``top_k`` is outside ``[1, V]``.
    """
    raise NotImplementedError('not implemented yet: implement sample_next_token in exercises/generation/generation.py (hint: jnp.argmax for temperature 0; jax.lax.top_k gives the k-th largest logit to threshold with jnp.where; jax.random.categorical samples)')


def generate(
    model: nnx.Module,
    prompt: jax.Array,
    max_new_tokens: int,
    key: jax.Array,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> jax.Array:
    """Continues each prompt by ``max_new_tokens`` tokens, one at a time.

    At step ``t`` the model reads the tokens so far (at most its last
    ``model.max_seq_len``), :func:`sample_next_token` picks token ``t`` from the
    logits of the last position, and it is appended. The tokens live in one
    fixed-size buffer ``int32[B, T + max_new_tokens]`` updated inside a
    ``jax.lax`` loop, so the loop compiles once, not once per new token.
    Step ``t`` uses the key ``jax.random.fold_in(key, t)``.

    Args:
      model: an NNX module mapping ``int[B, T]`` to logits ``float[B, T, V]``,
        causal (position ``t`` sees only positions ``<= t``), with an int
        attribute ``max_seq_len``, its context length.
      prompt: ``int[B, T]``, ``1 <= T <= model.max_seq_len``.
      max_new_tokens: how many tokens to add, ``>= 0``.
      key: a ``jax.random`` key.
      temperature, top_k: as for :func:`sample_next_token`.

    Returns:
      ``int32[B, T + max_new_tokens]``: the prompt followed by the new tokens.

    Raises:
      ValueError: the prompt is empty or longer than ``model.max_seq_len``, or
        ``max_new_tokens`` is negative.
    """
    raise NotImplementedError('not implemented yet: implement generate in exercises/generation/generation.py (hint: nnx.split the model and jit a function that nnx.merges it; write tokens into a zero buffer with jax.lax.fori_loop and .at[].set; read a window of the last max_seq_len tokens with jax.lax.dynamic_slice)')


