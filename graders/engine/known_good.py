"""Known-good building blocks for the worker: the reference's functions exported as programs, never as source.

A suite whose exercise builds on another declares what it needs in a
module-scoped ``building_blocks`` fixture (the plugin's default is none)::

    @pytest.fixture(scope="module")
    def building_blocks(dims):
        return known_good.attention(d_k=(dims[4],))

The grader exports the reference's functions, and its modules as functions of
their weights (imported here, in the trusted process: ``exercises.*`` is the
reference) with ``jax.export``: StableHLO with symbolic sizes, serialized with
its VJP (``vjp_order=1``) and without source locations (no file names, no code). The worker's stand-ins
(``graders.runtime.known_good``) run them in place of the submission's
modules while the dependent exercise's module is imported.
"""

from __future__ import annotations

import contextlib
import importlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from graders.engine import reference_store
from graders.runtime.known_good import LAYERS

DTYPES = ("float32", "bfloat16")


@contextlib.contextmanager
def _without_locations():
    """Programs lowered meanwhile carry no source file names or tracebacks (nothing of the reference's files)."""
    settings = {"jax_traceback_in_locations_limit": 0, "jax_hlo_source_file_canonicalization_regex": ".*",
                "jax_default_matmul_precision": "highest"}  # float32 attention is graded at the highest precision
    before = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            jax.config.update(name, value)


def _serialized(fn, *args: jax.ShapeDtypeStruct) -> np.ndarray:
    """``uint8[n]``: ``fn`` exported for ``args`` (shapes may be symbolic) and serialized with its VJP.

    For this process's platform and the CPU, which a worker without the accelerator falls back to.
    """
    platforms = tuple(dict.fromkeys([jax.default_backend(), "cpu"]))
    with _without_locations():
        exported = jax.export.export(jax.jit(fn), platforms=platforms)(*args)
        return np.frombuffer(bytes(exported.serialize(vjp_order=1)), np.uint8)


def _reference(exercise: str):
    """The reference's module of ``exercise`` (this process maps ``exercises.*`` to the reference)."""
    return importlib.import_module(f"exercises.{exercise}.{exercise}")


def attention(d_k: tuple[int, ...], dtypes: tuple[str, ...] = DTYPES) -> dict[str, np.ndarray]:
    """``causal_mask`` and ``scaled_dot_product_attention`` for head widths ``d_k`` and ``dtypes``.

    Attention's program takes ``[N, T_q, d_k]`` queries, ``[N, T_k, d_k]``
    keys, ``[N, T_k, d_v]`` values and a ``bool[N, T_q, T_k]`` mask, with
    ``N``, ``T_q``, ``T_k`` and ``d_v`` symbolic; ``d_k`` is concrete (the
    scale ``1 / sqrt(d_k)`` is a Python number), hence one program per width.
    Exported once per grading seed (the reference store).
    """
    return reference_store.outputs("known_good.attention", (tuple(d_k), tuple(dtypes)), lambda: _attention(d_k, dtypes))


def _attention(d_k: tuple[int, ...], dtypes: tuple[str, ...]) -> dict[str, np.ndarray]:
    module = _reference("attention")
    N, T_q, T_k, d_v, T = jax.export.symbolic_shape("N, T_q, T_k, d_v, T")
    programs = {"attention/causal_mask": _serialized(lambda anchor: module.causal_mask(anchor.shape[0]),
                                                     jax.ShapeDtypeStruct((T,), jnp.bool_))}
    for dtype in dtypes:
        for width in d_k:
            programs[f"attention/scaled_dot_product_attention/{dtype}/{width}"] = _serialized(
                module.scaled_dot_product_attention, jax.ShapeDtypeStruct((N, T_q, width), dtype),
                jax.ShapeDtypeStruct((N, T_k, width), dtype), jax.ShapeDtypeStruct((N, T_k, d_v), dtype),
                jax.ShapeDtypeStruct((N, T_q, T_k), jnp.bool_))
    return programs


def loss(dtypes: tuple[str, ...] = ("float32",), masked: tuple[bool, ...] = (False,)) -> dict[str, np.ndarray]:
    """``cross_entropy_loss`` (``[N, V]`` logits, ``int32[N]`` targets, with ``masked`` a ``float32[N]`` mask) and
    ``next_token_loss`` (``[B, T, V]`` logits, ``int32[B, T]`` tokens, with ``masked`` an ``int32`` pad id) for
    ``logits`` of ``dtypes``. By default the unmasked programs only: each program costs its export (once per grading
    seed: the reference store)."""
    return reference_store.outputs("known_good.loss", (tuple(dtypes), tuple(masked)), lambda: _loss(dtypes, masked))


def _loss(dtypes: tuple[str, ...], masked: tuple[bool, ...]) -> dict[str, np.ndarray]:
    module = _reference("loss")
    N, V = jax.export.symbolic_shape("N, V")
    B, T, V_ = jax.export.symbolic_shape("B, T, V", constraints=("T >= 2",))
    programs = {}
    for dtype in dtypes:
        logits, targets = jax.ShapeDtypeStruct((N, V), dtype), jax.ShapeDtypeStruct((N,), jnp.int32)
        sequences, tokens = jax.ShapeDtypeStruct((B, T, V_), dtype), jax.ShapeDtypeStruct((B, T), jnp.int32)
        for mask in masked:
            programs[f"loss/cross_entropy_loss/{dtype}/{'masked' if mask else 'all'}"] = _serialized(
                module.cross_entropy_loss, logits, targets, *[jax.ShapeDtypeStruct((N,), jnp.float32)] * mask)
            programs[f"loss/next_token_loss/{dtype}/{'padded' if mask else 'all'}"] = _serialized(
                module.next_token_loss, sequences, tokens, *[jax.ShapeDtypeStruct((), jnp.int32)] * mask)
    return programs


def transformer(multi_head_attention: tuple[tuple[int, int], ...] = (),
                feed_forward: tuple[tuple[int, int], ...] = ()) -> dict[str, np.ndarray]:
    """``MultiHeadAttention`` for each ``(d_model, num_heads)`` and ``FeedForward`` for each ``(d_model, d_ff)``,
    float32, as functions of their weights.

    A module's program takes its weights as ``{layer: {"kernel", "bias"}}``
    (the layers of :data:`LAYERS`), then the inputs with the leading axes
    flattened into ``N``: attention ``x`` ``[N, T_q, d_model]``, ``context``
    ``[N, T_k, d_model]`` (``x`` again for self-attention) and a ``bool[N,
    num_heads, T_q, T_k]`` mask; the feed-forward ``x`` ``[N, d_model]``.
    ``N``, ``T_q`` and ``T_k`` are symbolic. Exported once per grading seed (the reference store).
    """
    return reference_store.outputs("known_good.transformer", (tuple(multi_head_attention), tuple(feed_forward)),
                                   lambda: _transformer(multi_head_attention, feed_forward))


def _transformer(multi_head_attention, feed_forward) -> dict[str, np.ndarray]:
    module = _reference("transformer")
    N, T_q, T_k = jax.export.symbolic_shape("N, T_q, T_k")
    f32 = jnp.float32
    programs = {}
    for d_model, heads in multi_head_attention:
        call = _as_function_of_weights(lambda: module.MultiHeadAttention(d_model, heads, rngs=nnx.Rngs(0)))
        programs[f"transformer/multi_head_attention/float32/{d_model}/{heads}"] = _serialized(
            lambda weights, x, context, mask, call=call: call(weights, x, context=context, mask=mask),
            _weights("multi_head_attention", [(d_model, d_model)] * 4), jax.ShapeDtypeStruct((N, T_q, d_model), f32),
            jax.ShapeDtypeStruct((N, T_k, d_model), f32), jax.ShapeDtypeStruct((N, heads, T_q, T_k), jnp.bool_))
    for d_model, d_ff in feed_forward:
        call = _as_function_of_weights(lambda: module.FeedForward(d_model, d_ff, rngs=nnx.Rngs(0)))
        programs[f"transformer/feed_forward/float32/{d_model}/{d_ff}"] = _serialized(
            call, _weights("feed_forward", [(d_model, d_ff), (d_ff, d_model)]), jax.ShapeDtypeStruct((N, d_model), f32))
    return programs


def _weights(module: str, shapes: list[tuple[int, int]]) -> dict:
    """The abstract weights of ``module``'s layers: ``{layer: {"kernel": float32[n_in, n_out], "bias": float32[n_out]}}``."""
    return {layer: {"kernel": jax.ShapeDtypeStruct(shape, jnp.float32), "bias": jax.ShapeDtypeStruct(shape[1:], jnp.float32)}
            for layer, shape in zip(LAYERS[module], shapes, strict=True)}


def _as_function_of_weights(build):
    """``(weights, *args, **kwargs) -> output``: the module ``build()`` makes, with ``weights`` as its parameters."""
    graph, abstract = nnx.split(nnx.eval_shape(build))

    def call(weights, *args, **kwargs):
        state = jax.tree.map(lambda leaf: leaf, abstract)  # a copy: replace_by_pure_dict updates it in place
        nnx.replace_by_pure_dict(state, weights)
        return nnx.merge(graph, state)(*args, **kwargs)

    return call


def positional_encoding(d_model: tuple[int, ...]) -> dict[str, np.ndarray]:
    """``sinusoidal_positional_encoding`` for widths ``d_model`` and the default base: a program of an anchor
    ``bool[T]`` (``T`` symbolic: the number of positions) to ``float32[T, d_model]``."""
    return reference_store.outputs("known_good.positional_encoding", tuple(d_model), lambda: _positional_encoding(d_model))


def _positional_encoding(d_model: tuple[int, ...]) -> dict[str, np.ndarray]:
    module = _reference("positional_encoding")
    (T,) = jax.export.symbolic_shape("T")
    return {f"positional_encoding/sinusoidal_positional_encoding/{width}": _serialized(
        lambda anchor, width=width: module.sinusoidal_positional_encoding(anchor.shape[0], width),
        jax.ShapeDtypeStruct((T,), jnp.bool_)) for width in d_model}
