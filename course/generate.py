"""Fast generation with a key/value cache (an advanced extension of the generation exercise).

The generation exercise re-reads the whole sequence for every new token: step
``t`` costs a forward pass over ``t`` positions. But in a causal model the keys
and values of earlier positions never change, so they can be kept: each layer
stores them in a fixed-size cache ``[B, H, max_seq_len, d_head]``, and a new
token costs one position. The prompt is run once in parallel (the *prefill*),
then each step feeds the latest token alone (the *decode* step).

The cached path reuses the model's own layers (your ``DecoderBlock``'s ``ln1``,
``attn.query/key/value/out``, ``ln2``, ``ffn`` and your
``scaled_dot_product_attention``), following the conventions of the transformer
exercise: pre-norm blocks, heads split by reshaping the last axis to
``[num_heads, d_head]``. With a correct submission its tokens are exactly those
of the uncached exercise ``generate`` (a test checks it), as long as the
sequence fits the context. Beyond the context the cache cannot slide (the
positional encoding is absolute), so the last half-context of tokens is run
through a fresh prefill and decoding continues from there.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from course import tokenizer
from course.model import TransformerLM
from course.submission import exercise_module

# Per layer: keys [B, H, d_head, max_seq_len] and values [B, H, max_seq_len, d_head]. The keys are
# stored transposed, as the attention scores read them (q @ k^T): XLA then copies no cache per step.
Cache = list[tuple[jax.Array, jax.Array]]


def init_cache(model: TransformerLM, batch: int) -> Cache:
    """An empty cache for ``batch`` sequences: zeros, filled position by position."""
    c = model.config
    d_head = c.d_model // c.num_heads
    return [(jnp.zeros((batch, c.num_heads, d_head, c.max_seq_len), jnp.float32),
             jnp.zeros((batch, c.num_heads, c.max_seq_len, d_head), jnp.float32)) for _ in range(c.num_layers)]


def _split_heads(x: jax.Array, heads: int) -> jax.Array:
    x = x.reshape(*x.shape[:-1], heads, -1)  # [B, T, H, d_head]
    return jnp.swapaxes(x, -2, -3)  # [B, H, T, d_head]


def forward_cached(model: TransformerLM, tokens: jax.Array, cache: Cache, start: jax.Array) -> tuple[jax.Array, Cache]:
    """Runs ``tokens`` at positions ``start, start + 1, ...``, reading and extending ``cache``.

    Args:
      model: the language model.
      tokens: ``int[B, T_new]``, ``start + T_new <= max_seq_len``.
      cache: keys and values of positions ``< start`` (later slots are ignored).
      start: the position of ``tokens[:, 0]`` (an int32 scalar; may be traced).

    Returns:
      ``(logits float32[B, T_new, V], cache)`` with positions ``< start + T_new`` filled.
    """
    sdpa = exercise_module("attention").scaled_dot_product_attention
    c = model.config
    T_new = tokens.shape[1]
    positions = jax.lax.dynamic_slice_in_dim(model.positions[...], start, T_new)  # [T_new, d_model]
    x = model.embed(tokens) * math.sqrt(c.d_model) + positions  # [B, T_new, d_model]
    query_pos = start + jnp.arange(T_new)
    mask = jnp.arange(c.max_seq_len)[None, :] <= query_pos[:, None]  # [T_new, max_seq_len]
    new_cache = []
    for block, (keys, values) in zip(model.blocks, cache):
        h = block.ln1(x)
        attn = block.attn
        q = _split_heads(attn.query(h), c.num_heads)  # [B, H, T_new, d_head]
        new_keys = jnp.swapaxes(_split_heads(attn.key(h), c.num_heads), -1, -2)  # [B, H, d_head, T_new]
        keys = jax.lax.dynamic_update_slice_in_dim(keys, new_keys, start, axis=3)
        values = jax.lax.dynamic_update_slice_in_dim(values, _split_heads(attn.value(h), c.num_heads), start, axis=2)
        heads, _ = sdpa(q, jnp.swapaxes(keys, -1, -2), values, mask)  # [B, H, T_new, d_head]
        heads = jnp.swapaxes(heads, -2, -3)  # [B, T_new, H, d_head]
        x = x + attn.out(heads.reshape(*heads.shape[:-2], -1))
        x = x + block.ffn(block.ln2(x))
        new_cache.append((keys, values))
    return model.head(model.ln_f(x)), new_cache


def _sample(logits: jax.Array, key: jax.Array, t: jax.Array, temperature: float, top_k: int | None) -> jax.Array:
    """Token ``t`` of the output, drawn with the key ``fold_in(key, t)`` like the exercise's ``generate``."""
    sample = exercise_module("generation").sample_next_token
    return sample(logits, jax.random.fold_in(key, t), temperature, top_k)


@partial(jax.jit, static_argnums=(0, 6, 7))
def _prefill(graph, weights, tokens, cache, key, t, temperature, top_k):
    """Fills a fresh cache with ``tokens`` (positions from 0) and samples output token ``t``."""
    logits, cache = forward_cached(nnx.merge(graph, weights), tokens, cache, jnp.int32(0))
    return _sample(logits[:, -1], key, t, temperature, top_k), cache


@partial(jax.jit, static_argnums=(0, 7, 8), donate_argnums=(3,))
def _decode(graph, weights, token, cache, position, key, t, temperature, top_k):
    """Feeds ``token`` at cache ``position`` and samples output token ``t``."""
    logits, cache = forward_cached(nnx.merge(graph, weights), token[:, None], cache, position)
    return _sample(logits[:, 0], key, t, temperature, top_k), cache


def stream(
    model: TransformerLM,
    prompt: jax.Array,
    max_new_tokens: int,
    key: jax.Array,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> Iterator[np.ndarray]:
    """Yields the new tokens one step at a time, ``int32[B]`` each, using the cache.

    Token ``t`` of the output (counting the prompt) is sampled with the key
    ``jax.random.fold_in(key, t)``, as in the generation exercise, so the two
    agree token for token while the sequence fits the context.

    Args:
      model: the language model.
      prompt: ``int[B, T]``, ``1 <= T <= max_seq_len``.
      max_new_tokens: how many tokens to produce, ``>= 0``.
      key, temperature, top_k: as for ``sample_next_token``.

    Raises:
      ValueError: the prompt is empty or longer than the context, or ``max_new_tokens < 0``.
    """
    context = model.config.max_seq_len
    if prompt.ndim != 2 or not 1 <= prompt.shape[1] <= context:
        raise ValueError(f"prompt: expected int[B, T] with 1 <= T <= {context}, got shape {prompt.shape}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens: must not be negative, got {max_new_tokens}")
    # The jitted steps take the weights as arguments, so they compile once for any weights.
    graph, weights = nnx.split(model)
    batch = prompt.shape[0]
    prompt_len = prompt.shape[1]
    history = [np.asarray(prompt, np.int32)]  # every token so far, for a restart of the cache
    token, cache = _prefill(graph, weights, jnp.asarray(history[0]), init_cache(model, batch), key, prompt_len, temperature, top_k)
    filled = prompt_len  # cache positions in use
    for t in range(prompt_len, prompt_len + max_new_tokens):
        current = token
        if t + 1 < prompt_len + max_new_tokens:  # dispatch the next step before waiting for this token
            if filled < context:
                token, cache = _decode(graph, weights, current, cache, jnp.int32(filled), key, t + 1, temperature, top_k)
                filled += 1
            else:  # the cache is full: restart it from the latest half-context
                recent = np.concatenate([*history, np.asarray(current)[:, None]], axis=1)[:, -(context // 2):]
                token, cache = _prefill(graph, weights, jnp.asarray(recent), init_cache(model, batch), key, t + 1, temperature, top_k)
                filled = recent.shape[1]
        history.append(np.asarray(current)[:, None])
        yield history[-1][:, 0]


def generate_cached(model: TransformerLM, prompt: jax.Array, max_new_tokens: int, key: jax.Array,
                    temperature: float = 1.0, top_k: int | None = None) -> np.ndarray:
    """:func:`stream` collected: ``int32[B, T + max_new_tokens]``, the prompt then the new tokens."""
    new = [t[:, None] for t in stream(model, prompt, max_new_tokens, key, temperature, top_k)]
    return np.concatenate([np.asarray(prompt, np.int32), *new], axis=1)


class PromptError(ValueError):
    """A generation setting does not suit the model; ``field`` names it (``prompt``, ``top_k``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def continue_text(
    model: TransformerLM,
    prompt: str,
    *,
    max_new_tokens: int = 300,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
    cache: bool = True,
) -> Iterator[str]:
    """Continues ``prompt`` with ``model``, yielding the new text piece by piece (``course generate``; a notebook can call it).

    With ``cache`` the text comes token by token from :func:`stream`; without it
    the active submission's ``generate`` (the exercise, no cache) produces it all
    at once. A character that spans several byte tokens is yielded whole.

    Raises:
      PromptError: the prompt is empty, longer than the context, or holds bytes
        the model does not know (a synthetic task's model), or ``top_k`` exceeds
        the vocabulary; raised before any text is produced.
    """
    ids = _prompt_ids(model, prompt, top_k)  # here, not inside the generator: bad settings fail before any output
    return _pieces(model, jnp.asarray(ids)[None], max_new_tokens, jax.random.key(seed), temperature, top_k, cache)


def _pieces(model, batch, max_new_tokens, key, temperature, top_k, cache) -> Iterator[str]:
    if not cache:
        generate = exercise_module("generation").generate
        yield tokenizer.decode(generate(model, batch, max_new_tokens, key, temperature, top_k)[0, batch.shape[1]:])
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span several byte tokens
    for token in stream(model, batch, max_new_tokens, key, temperature, top_k):
        yield decoder.decode(bytes([int(token[0])]))
    yield decoder.decode(b"", final=True)


def _prompt_ids(model: TransformerLM, prompt: str, top_k: int | None) -> np.ndarray:
    vocab, context = model.config.vocab_size, model.config.max_seq_len
    if top_k is not None and top_k > vocab:
        raise PromptError("top_k", f"expected at most the vocabulary size {vocab}, got {top_k}")
    ids = tokenizer.encode(prompt)
    if ids.max(initial=0) >= vocab:
        raise PromptError("prompt", f"this model knows {vocab} token ids (a synthetic task's model?), not the text's bytes")
    if not 1 <= len(ids) <= context:
        raise PromptError("prompt", f"{len(ids)} bytes; expected 1 to {context} (the model's context)")
    return ids
