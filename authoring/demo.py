"""``course build-demo``: the shipped demo model as compiled programs, so the demo runs without solution code.

The demo (``course generate`` without ``--submission``, the first notebook)
must run on a fresh student checkout, whose exercises are stubs. So the
reference model is traced here, once, and shipped as two ``jax.export``
programs (StableHLO, lowered for CPU and CUDA), serialized into
``course/demo/model.jaxexport`` (:mod:`course.compiled_demo` runs them):

- ``prefill``: the prompt, padded to the context, through the model into a
  fresh key/value cache (``course.generate.forward_cached``); samples the
  first new token.
- ``decode``: up to :func:`chunk_size` steps of cached
  decoding in one ``lax.fori_loop``, each feeding the latest token and
  sampling the next. When the cache is full, it first restarts it from the
  latest half-context, as :func:`course.generate.stream` does, inside the
  program: no round trip, and compiled with the loop.

The decoding step (:func:`decode_step`) is written for speed on a CPU, where
each of XLA's operations costs a few microseconds whatever its size: its
attention reads the cache before writing the new key and value, so XLA
updates the cache in place; the top-k threshold is a comparison count, not a
sort; and the random draws of a whole chunk are made before its loop.

The weights are arguments, read from ``course/demo/model.npz`` at run time:
the artifact holds the programs only. Temperature and top-k are arguments
too (top-k as a threshold at the k-th largest logit, the exercise's rule with
``k`` known only at run time). Token ``t`` is drawn with the key
``fold_in(key, t)``, as in the generation exercise. Locations (source file
and line of every operation) are stripped, so the bytes hold no path and no
source of ``reference/``, and the build is the same from any checkout.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax._src.export import _export
from jax._src.interpreters import mlir
from jax._src.lib.mlir import ir, passmanager

from course import compiled_demo as demo
from course import submission
from course.checkpoint import DEMO_CHECKPOINT, MODEL_FILE, load_checkpoint
from course.generate import Cache, _split_heads, forward_cached, init_cache
from course.params import SEPARATOR

PLATFORMS = ("cpu", "cuda")


def sample(logits: jax.Array, noise: jax.Array, temperature: jax.Array, top_k: jax.Array) -> jax.Array:
    """The generation exercise's sampling rule with run-time settings.

    ``jax.random.categorical(key, x)`` is ``argmax(x + jax.random.gumbel(key, x.shape))``,
    so with ``noise`` drawn that way the token is the one the exercise draws with ``key``.

    Args:
      logits: ``float32[B, V]``.
      noise: ``float32[B, V]``, Gumbel noise (see :func:`gumbel`).
      temperature: ``float32[]``; 0 is greedy.
      top_k: ``int32[]`` in ``[1, V]``; ``V`` keeps every token.

    Returns:
      ``int32[B]``.
    """
    scaled = logits / jnp.where(temperature > 0, temperature, 1.0)
    # The k-th largest logit is the smallest one with fewer than k logits above it: exact, ties
    # all kept, and one comparison of every pair instead of a sort (4 us a token instead of 23 us on 2 cores).
    above = jnp.sum(scaled[..., None, :] > scaled[..., :, None], axis=-1)  # [B, V]
    kth_largest = jnp.min(jnp.where(above < top_k, scaled, jnp.inf), axis=-1, keepdims=True)
    drawn = jnp.argmax(jnp.where(scaled >= kth_largest, scaled, -jnp.inf) + noise, axis=-1)
    return jnp.where(temperature > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


def gumbel(key_data: jax.Array, t: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``float32[shape]``: the noise that draws token ``t`` (counting the prompt) with the key ``fold_in(key, t)``."""
    return jax.random.gumbel(jax.random.fold_in(jax.random.wrap_key_data(key_data), t), shape)


def decode_step(model, token: jax.Array, cache: Cache, position: jax.Array) -> tuple[jax.Array, Cache]:
    """``course.generate.forward_cached`` for one token, written so that XLA updates the cache in place.

    Args:
      model: the reference language model.
      token: ``int32[]``, fed at ``position``.
      cache: keys and values of positions ``< position``.
      position: ``int32[]``, ``< max_seq_len``.

    Returns:
      ``(logits float32[1, V], cache)`` with ``position`` filled.
    """
    c = model.config
    position_code = jax.lax.dynamic_slice_in_dim(model.positions[...], position, 1)  # [1, d_model]
    x = model.embed(token[None, None]) * math.sqrt(c.d_model) + position_code  # [1, 1, d_model]
    earlier = jnp.arange(c.max_seq_len) < position  # the cached positions
    new_cache = []
    for block, (keys, values) in zip(model.blocks, cache):
        h = block.ln1(x)
        attn = block.attn
        # One matrix product for the three projections (XLA hoists the concatenations out of the loop).
        projections = (attn.query, attn.key, attn.value)
        kernel = jnp.concatenate([p.kernel[...] for p in projections], 1)  # [d_model, 3 d_model]
        qkv = h @ kernel + jnp.concatenate([p.bias[...] for p in projections])
        q, k, v = (_split_heads(part, c.num_heads) for part in jnp.split(qkv, 3, axis=-1))  # [1, H, 1, d_head]
        # Softmax over the cached positions and the new one, read from the cache and from k, v.
        scores = jnp.concatenate([jnp.where(earlier, q @ keys, -jnp.inf), q @ jnp.swapaxes(k, -1, -2)], -1)
        weights = jax.nn.softmax(scores / math.sqrt(q.shape[-1]), axis=-1)  # [1, H, 1, max_seq_len + 1]
        heads = weights[..., :-1] @ values + weights[..., -1:] * v
        # The new key and value are written after the cache is read: `+ 0 * heads[...]` makes the write
        # depend on the read, so XLA updates the cache in place instead of copying it at every step
        # (an optimisation barrier does not order them on a CPU): 1.45x the loop's tokens/s on 2 cores.
        after_read = heads[0, 0, 0, 0] * 0.0
        keys = jax.lax.dynamic_update_slice_in_dim(keys, jnp.swapaxes(k, -1, -2) + after_read, position, axis=3)
        values = jax.lax.dynamic_update_slice_in_dim(values, v + after_read, position, axis=2)
        x = x + attn.out(jnp.swapaxes(heads, -2, -3).reshape(1, 1, c.d_model))
        x = x + block.ffn(block.ln2(x))
        new_cache.append((keys, values))
    return model.head(model.ln_f(x))[:, 0], new_cache


def chunk_size(context: int) -> int:
    """The most tokens one decode call makes: a restart of the cache (from ``context // 2`` tokens) and the steps
    that fill it again."""
    return context - context // 2 + 1


def _programs(model):
    """``prefill`` and ``decode`` of ``model`` as functions of the flat weights (see :mod:`course.compiled_demo`)."""
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    names = [SEPARATOR.join(map(str, path)) for path, _ in nnx.to_flat_state(params)]
    context, vocab = model.config.max_seq_len, model.config.vocab_size
    chunk = chunk_size(context)

    def merged(weights):
        flat = [(path, variable.replace(weights[name]))
                for (path, variable), name in zip(nnx.to_flat_state(params), names)]
        return nnx.merge(graph, nnx.from_flat_state(flat), rest)

    def first(m, tokens, length, key_data, t, temperature, top_k):
        """``tokens[:length]`` at positions from 0 into a fresh cache; samples token ``t``."""
        logits, cache = forward_cached(m, tokens[None], init_cache(m, 1), jnp.int32(0))
        last = jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False)  # [1, V]
        return sample(last, gumbel(key_data, t, (1, vocab)), temperature, top_k)[0], cache

    def prefill(weights, window, length, key_data, t, temperature, top_k):
        """``window[:length]`` at positions from 0 into a fresh cache; samples token ``t``; returns ``(token, cache)``."""
        return first(merged(weights), window, length, key_data, t, temperature, top_k)

    def decode(weights, cache, recent, position, t, steps, key_data, temperature, top_k):
        """``steps`` (at most ``chunk``) new tokens from ``t`` on; returns ``(tokens, cache)``.

        ``recent``: ``int32[context // 2]``, the latest tokens, the last one not yet in the cache.
        It is fed at ``position``; or, at ``position == context`` (the cache is full), the
        cache restarts from ``recent``, which gives the first new token.
        """
        m = merged(weights)
        noise = jax.vmap(lambda i: gumbel(key_data, t + i, (1, vocab)))(jnp.arange(chunk))  # [chunk, 1, V]
        restart = position == context
        token, cache = jax.lax.cond(
            restart, lambda c: first(m, recent, jnp.int32(context // 2), key_data, t, temperature, top_k),
            lambda c: (recent[-1], c), cache)
        tokens = jnp.zeros((chunk,), jnp.int32).at[0].set(token)  # kept only after a restart
        start = jnp.where(restart, context // 2 - 1, position)  # token i + 1 is fed at start + i

        def step(i, carry):
            tokens, cache, token = carry
            logits, cache = decode_step(m, token, cache, start + i)
            token = sample(logits, noise[i], temperature, top_k)[0]
            return tokens.at[i].set(token), cache, token

        tokens, cache, _ = jax.lax.fori_loop(restart.astype(jnp.int32), steps, step, (tokens, cache, token))
        return tokens, cache

    return prefill, decode, names


def build(path: Path = demo.ARTIFACT, *, write: bool = True) -> bool:
    """Exports the demo's programs from ``reference/`` and the shipped weights' shapes into ``path``.

    Returns:
      Whether ``path`` differed from (``write``: was replaced by) the fresh build.
    """
    prefill, decode, meta = export()
    fresh = (prefill, decode, meta)
    try:
        stale = demo.read(path) != fresh
    except (OSError, KeyError, ValueError):
        stale = True
    if stale and write:
        demo.write(path, *fresh)
    return stale


def export(checkpoint: Path = DEMO_CHECKPOINT, reference: Path | None = None) -> tuple[bytes, bytes, dict]:
    """The serialized programs of the reference model with ``checkpoint``'s shapes, and their metadata."""
    with submission.active(reference or submission.repo_root() / "reference"):
        model, _ = load_checkpoint(checkpoint)
        prefill, decode, names = _programs(model)
        with np.load(checkpoint / MODEL_FILE) as data:
            weights = {name: jax.ShapeDtypeStruct(data[f"model{SEPARATOR}{name}"].shape, jnp.float32) for name in names}
        i32, window = jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((model.config.max_seq_len,), jnp.int32)
        settings = (jax.ShapeDtypeStruct((2,), jnp.uint32), jax.ShapeDtypeStruct((), jnp.float32), i32)  # key, temperature, top_k
        pre = jax.export.export(jax.jit(prefill), platforms=PLATFORMS)(weights, window, i32, settings[0], i32, *settings[1:])
        _, cache = jax.eval_shape(prefill, weights, window, i32, settings[0], i32, *settings[1:])
        recent = jax.ShapeDtypeStruct((model.config.max_seq_len // 2,), jnp.int32)  # the latest half-context
        dec = jax.export.export(jax.jit(decode), platforms=PLATFORMS)(weights, cache, recent, i32, i32, i32, *settings)
    context = model.config.max_seq_len
    meta = {"jax": jax.__version__, "context": context, "vocab": model.config.vocab_size, "chunk": chunk_size(context),
            "platforms": list(PLATFORMS)}
    return bytes(_stripped(pre).serialize()), bytes(_stripped(dec).serialize()), meta


def _stripped(exported: jax.export.Exported) -> jax.export.Exported:
    """``exported`` without locations: each operation's source file and line (paths of this checkout, reference/'s names).

    ``jax.export`` has no public option for it, so this uses JAX's own MLIR
    bindings and serializer (``jax._src``): an authoring tool, pinned with the
    JAX it runs on; the student's side only deserializes.
    """
    with mlir.make_ir_context():
        module = ir.Module.parse(exported.mlir_module())
        passmanager.PassManager.parse("builtin.module(strip-debuginfo)").run(module.operation)
        return dataclasses.replace(exported, mlir_module_serialized=_export._module_to_bytecode(module))
