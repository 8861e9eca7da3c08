"""``course build-demo``: the shipped demo model as compiled programs, so the demo runs without solution code.

The demo (``course generate`` without ``--submission``, the first notebook)
must run on a fresh student checkout, whose exercises are stubs. So the
reference model is traced here, once, and shipped as two ``jax.export``
programs (StableHLO, lowered for CPU and CUDA), serialized into
``course/demo/model.jaxexport`` (:mod:`course.compiled_demo` runs them):

- ``prefill``: the prompt, padded to the context, through the model into a
  fresh key/value cache (``course.generate.forward_cached``); samples the
  first new token.
- ``decode``: up to :data:`course.compiled_demo.CHUNK` steps of cached
  decoding in one ``lax.fori_loop``, each feeding the latest token and
  sampling the next.

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
from course.generate import forward_cached, init_cache
from course.params import SEPARATOR

PLATFORMS = ("cpu", "cuda")


def sample(logits: jax.Array, key: jax.Array, temperature: jax.Array, top_k: jax.Array) -> jax.Array:
    """The generation exercise's sampling rule with run-time settings.

    Args:
      logits: ``float32[B, V]``.
      key: a ``jax.random`` key.
      temperature: ``float32[]``; 0 is greedy.
      top_k: ``int32[]`` in ``[1, V]``; ``V`` keeps every token.

    Returns:
      ``int32[B]``.
    """
    vocab = logits.shape[-1]
    scaled = logits / jnp.where(temperature > 0, temperature, 1.0)
    kth_largest = jax.lax.cond(  # the sort only when it matters; ties at the k-th are all kept
        top_k < vocab, lambda s: jnp.sort(s, axis=-1)[..., vocab - top_k][..., None],
        lambda s: jnp.full((*s.shape[:-1], 1), -jnp.inf, s.dtype), scaled)
    drawn = jax.random.categorical(key, jnp.where(scaled >= kth_largest, scaled, -jnp.inf), axis=-1)
    return jnp.where(temperature > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


def _programs(model):
    """``prefill`` and ``decode`` of ``model`` as functions of the flat weights (see :mod:`course.compiled_demo`)."""
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    names = [SEPARATOR.join(map(str, path)) for path, _ in nnx.to_flat_state(params)]

    def merged(weights):
        flat = [(path, variable.replace(weights[name]))
                for (path, variable), name in zip(nnx.to_flat_state(params), names)]
        return nnx.merge(graph, nnx.from_flat_state(flat), rest)

    def draw(logits, key_data, t, temperature, top_k):
        return sample(logits, jax.random.fold_in(jax.random.wrap_key_data(key_data), t), temperature, top_k)

    def prefill(weights, window, length, key_data, t, temperature, top_k):
        """``window[:length]`` at positions from 0 into a fresh cache; samples token ``t``; returns ``(token, cache)``."""
        m = merged(weights)
        logits, cache = forward_cached(m, window[None], init_cache(m, 1), jnp.int32(0))
        last = jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False)  # [1, V]
        return draw(last, key_data, t, temperature, top_k)[0], cache

    def decode(weights, cache, token, position, t, steps, key_data, temperature, top_k):
        """``steps`` (at most CHUNK) tokens, feeding ``token`` at ``position`` first; returns ``(tokens, cache)``."""
        m = merged(weights)

        def step(i, carry):
            tokens, cache, token = carry
            logits, cache = forward_cached(m, token[None, None], cache, position + i)
            token = draw(logits[:, 0], key_data, t + i, temperature, top_k)[0]
            return tokens.at[i].set(token), cache, token

        tokens, cache, _ = jax.lax.fori_loop(0, steps, step, (jnp.zeros((demo.CHUNK,), jnp.int32), cache, token))
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
        dec = jax.export.export(jax.jit(decode), platforms=PLATFORMS)(weights, cache, i32, i32, i32, i32, *settings)
    meta = {"jax": jax.__version__, "context": model.config.max_seq_len, "vocab": model.config.vocab_size, "chunk": demo.CHUNK,
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
