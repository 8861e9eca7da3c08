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
    # BEGIN SOLUTION (hint: jnp.argmax for temperature 0; jax.lax.top_k gives the k-th largest logit to threshold with jnp.where; jax.random.categorical samples)
    if temperature < 0:
        raise ValueError(f"temperature: expected a value >= 0, got {temperature}")
    vocab = logits.shape[-1]
    if top_k is not None and not 1 <= top_k <= vocab:
        raise ValueError(f"top_k: expected an int in [1, {vocab}] (the vocabulary size), got {top_k}")
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_k is not None:
        kth_largest = jax.lax.top_k(logits, top_k)[0][..., -1:]  # [..., 1]
        logits = jnp.where(logits >= kth_largest, logits, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
    # END SOLUTION


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
    # BEGIN SOLUTION (hint: nnx.split the model and jit a function that nnx.merges it; write tokens into a zero buffer with jax.lax.fori_loop and .at[].set; read a window of the last max_seq_len tokens with jax.lax.dynamic_slice)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt: expected int[B, T] with T >= 1, got shape {prompt.shape}")
    if prompt.shape[1] > model.max_seq_len:
        raise ValueError(
            f"prompt: {prompt.shape[1]} tokens are longer than the model's context "
            f"(max_seq_len={model.max_seq_len})"
        )
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens: expected an int >= 0, got {max_new_tokens}")
    graphdef, state = nnx.split(model)
    return _generate(graphdef, state, prompt.astype(jnp.int32), max_new_tokens, key, temperature, top_k)
    # END SOLUTION


# BEGIN SOLUTION
@partial(jax.jit, static_argnums=(0, 3, 5, 6))
def _generate(graphdef, state, prompt, max_new_tokens, key, temperature, top_k):
    model = nnx.merge(graphdef, state)
    batch, prompt_len = prompt.shape
    total = prompt_len + max_new_tokens
    window = min(total, model.max_seq_len)  # the model never reads more than its context
    buffer = jnp.zeros((batch, total), jnp.int32).at[:, :prompt_len].set(prompt)

    def step(t, buffer):  # writes token t, reading tokens [t - window, t)
        start = jnp.clip(t - window, 0, total - window)
        tokens = jax.lax.dynamic_slice_in_dim(buffer, start, window, axis=1)  # [B, window]
        logits = jax.lax.dynamic_index_in_dim(model(tokens), t - 1 - start, axis=1, keepdims=False)  # [B, V]
        token = sample_next_token(logits, jax.random.fold_in(key, t), temperature, top_k)
        return jax.lax.dynamic_update_index_in_dim(buffer, token, t, axis=1)

    return jax.lax.fori_loop(prompt_len, total, step, buffer)
# END SOLUTION
