"""Known-good building blocks in the worker: the reference's functions and modules as compiled programs, without their source.

An exercise that builds on others (``transformer`` on ``attention``,
``training`` on ``loss``, ``encoder_decoder`` on all of them and the
positional encoding) is graded with known-good building blocks in place of
the submission's own, so that a mistake costs points in its own exercise
only. The grader exports the reference's functions with ``jax.export``
(StableHLO with symbolic sizes, and the VJP: ``graders.engine.known_good``)
and sends the serialized programs with the ``load`` request; here each
exercise's programs become a stand-in module (``exercises.attention.attention``
with ``causal_mask`` and ``scaled_dot_product_attention``) that the dependent
exercise's module imports instead of the submission's (:func:`import_module`).
A stand-in ``nnx.Module`` (``MultiHeadAttention``, ``FeedForward``) has the
specification's parameters and runs the reference's program of them.

The stand-ins check their arguments as the specification says, broadcast and
flatten them to the programs' fixed layouts (rows first) and call the
deserialized program: they run plainly, under ``jax.jit`` / ``nnx.jit``,
``jax.vjp`` (the exported VJP) and ``jax.vmap`` (for attention the mapped
axis is folded into the rows; a module's program runs once per mapped
example, its weights mapped or not). Program keys: ``attention/causal_mask``,
``attention/scaled_dot_product_attention/<dtype>/<d_k>``,
``loss/cross_entropy_loss/<dtype>/<all|masked>``,
``loss/next_token_loss/<dtype>/<all|padded>``,
``transformer/multi_head_attention/float32/<d_model>/<num_heads>``,
``transformer/feed_forward/float32/<d_model>/<d_ff>``,
``positional_encoding/sinusoidal_positional_encoding/<d_model>``.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np


class Programs:
    """Serialized ``jax.export`` programs by key, deserialized on first use."""

    def __init__(self, serialized: dict[str, np.ndarray]):
        self.serialized = serialized

    @functools.cache
    def get(self, key: str, what: str):
        if key not in self.serialized:
            raise TypeError(f"{what}: the grader's known-good version does not cover these arguments ({key})")
        return jax.export.deserialize(bytearray(np.asarray(self.serialized[key], np.uint8).tobytes()))


def _rows(fn):
    """``fn`` (arrays whose leading axis is rows, each row computed on its own) that ``jax.vmap`` maps by folding.

    Under ``vmap`` the mapped axis (broadcast where an argument is not mapped)
    is merged into the rows and split off the outputs again.
    """
    f = jax.custom_batching.custom_vmap(fn)

    @f.def_vmap
    def rule(axis_size, in_batched, *args):
        out = f(*jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), _mapped_axis_first(axis_size, in_batched, args)))
        return jax.tree.map(lambda o: o.reshape(axis_size, -1, *o.shape[1:]), out), jax.tree.map(lambda _: True, out)

    return f


def _examples(fn):
    """``fn`` that ``jax.vmap`` maps one example at a time (``lax.map``): for a module's program, whose weights have
    no rows axis to fold into, whether they are mapped too or not."""
    f = jax.custom_batching.custom_vmap(fn)

    @f.def_vmap
    def rule(axis_size, in_batched, *args):
        out = jax.lax.map(lambda example: f(*example), _mapped_axis_first(axis_size, in_batched, args))
        return out, jax.tree.map(lambda _: True, out)

    return f


def _mapped_axis_first(axis_size, in_batched, args):
    """``args`` with vmap's mapped axis in front of every array: broadcast where an argument is not mapped."""
    return jax.tree.map(lambda a, batched: a if batched else jnp.broadcast_to(a, (axis_size, *a.shape)),
                        args, tuple(in_batched))


def _differentiable(exported, differentiated: int, mappable=_rows):
    """The program as a function with its exported VJP for the first ``differentiated`` arguments; ``vmap`` maps it
    (forward and backward) as ``mappable`` (:func:`_rows` or :func:`_examples`) says."""
    forward = mappable(exported.call)

    def pullback(args, cotangents):
        _, vjp = jax.vjp(lambda *d: exported.call(*d, *args[differentiated:]), *args[:differentiated])
        return vjp(cotangents)

    backward = mappable(pullback)

    @jax.custom_vjp
    def f(*args):
        return forward(*args)

    def f_forward(*args):
        return forward(*args), args

    def f_backward(args, cotangents):
        return (*backward(args, cotangents), *[None] * (len(args) - differentiated))

    f.defvjp(f_forward, f_backward)
    return f


def attention_module(programs: Programs) -> types.ModuleType:
    """The stand-in for ``exercises.attention.attention``."""

    def causal_mask(seq_len: int) -> jax.Array:
        """``bool[seq_len, seq_len]``, ``mask[i, j]`` True iff ``j <= i`` (the grader's known-good version)."""
        if not isinstance(seq_len, int | np.integer) or seq_len <= 0:
            raise ValueError(f"seq_len: expected a positive int, got {seq_len}")
        return programs.get("attention/causal_mask", "causal_mask").call(jnp.zeros((int(seq_len),), bool))

    def scaled_dot_product_attention(query, key, value, mask=None):
        """``(output, weights)`` for ``float[..., T, d]`` inputs (the grader's known-good version)."""
        query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.ndim < 2:
                raise ValueError(f"{name}: expected shape [..., T, d], got {x.shape}")
        if query.shape[-1] != key.shape[-1]:
            raise ValueError(f"query and key: d_k must match, got query {query.shape} and key {key.shape}")
        if key.shape[-2] != value.shape[-2]:
            raise ValueError(f"key and value: T_k must match, got key {key.shape} and value {value.shape}")
        if not query.dtype == key.dtype == value.dtype:
            raise TypeError(f"query, key and value: expected one dtype, got {query.dtype}, {key.dtype} and {value.dtype}")
        (T_q, d_k), T_k, d_v = query.shape[-2:], key.shape[-2], value.shape[-1]
        mask = jnp.ones((T_q, T_k), bool) if mask is None else jnp.asarray(mask).astype(bool)
        lead = jnp.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2], mask.shape[:-2])

        def rows(x, *tail):
            return jnp.broadcast_to(x, (*lead, *tail)).reshape(-1, *tail)

        exported = programs.get(f"attention/scaled_dot_product_attention/{jnp.dtype(query.dtype).name}/{d_k}",
                                "scaled_dot_product_attention")
        output, weights = _differentiable(exported, 3)(rows(query, T_q, d_k), rows(key, T_k, d_k), rows(value, T_k, d_v),
                                                       rows(mask, T_q, T_k))
        return output.reshape(*lead, T_q, d_v), weights.reshape(*lead, T_q, T_k)

    return _module("attention", causal_mask=causal_mask, scaled_dot_product_attention=scaled_dot_product_attention)


def loss_module(programs: Programs) -> types.ModuleType:
    """The stand-in for ``exercises.loss.loss``."""

    def _integer(x, name):
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise TypeError(f"{name}: expected an integer array, got dtype {x.dtype}")

    def cross_entropy_loss(logits, targets, mask=None):
        """The float32 mean cross-entropy of ``targets`` under ``logits`` (the grader's known-good version)."""
        logits, targets = jnp.asarray(logits), jnp.asarray(targets)
        _integer(targets, "targets")
        if logits.shape[:-1] != targets.shape:
            raise ValueError(f"logits and targets: targets must have the leading shape of logits [..., V], "
                             f"got logits {logits.shape} and targets {targets.shape}")
        args = [logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).astype(jnp.int32)]
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.shape != targets.shape:
                raise ValueError(f"mask: expected the shape of targets {targets.shape}, got {mask.shape}")
            args.append(mask.reshape(-1).astype(jnp.float32))
        key = f"loss/cross_entropy_loss/{jnp.dtype(logits.dtype).name}/{'all' if mask is None else 'masked'}"
        return programs.get(key, "cross_entropy_loss").call(*args)

    def next_token_loss(logits, tokens, pad_id=None):
        """The float32 next-token loss of ``logits`` against ``tokens`` (the grader's known-good version)."""
        logits, tokens = jnp.asarray(logits), jnp.asarray(tokens)
        _integer(tokens, "tokens")
        if logits.ndim != 3 or tokens.ndim != 2 or logits.shape[:2] != tokens.shape:
            raise ValueError(f"logits and tokens: expected [B, T, V] and [B, T], got logits {logits.shape} and tokens {tokens.shape}")
        if tokens.shape[1] < 2:
            raise ValueError(f"tokens: need at least 2 positions to predict a next token, got {tokens.shape}")
        args = [logits, tokens.astype(jnp.int32)] + ([] if pad_id is None else [jnp.asarray(pad_id, jnp.int32)])
        key = f"loss/next_token_loss/{jnp.dtype(logits.dtype).name}/{'all' if pad_id is None else 'padded'}"
        return programs.get(key, "next_token_loss").call(*args)

    return _module("loss", cross_entropy_loss=cross_entropy_loss, next_token_loss=next_token_loss)


# The nnx.Linear layers of the transformer's modules, whose weights their programs take (graders.engine.known_good).
LAYERS = {"multi_head_attention": ("query", "key", "value", "out"), "feed_forward": ("up", "down")}


def transformer_module(programs: Programs) -> types.ModuleType:
    """The stand-in for ``exercises.transformer.transformer``: ``MultiHeadAttention`` and ``FeedForward``.

    Their parameters are the specification's (``nnx.Linear`` layers of the same
    names and sizes, so the grader's weights load by name); their forward pass
    is the reference's program of those weights.
    """
    from flax import nnx  # only where a grading asks for these stand-ins

    def weights(module, layers):
        return {name: {"kernel": getattr(module, name).kernel[...], "bias": getattr(module, name).bias[...]}
                for name in layers}

    def float32_only(x, what):
        if x.dtype != jnp.float32:
            raise TypeError(f"{what}: the grader's known-good version covers float32 inputs, got {x.dtype}")

    class MultiHeadAttention(nnx.Module):
        """The grader's known-good multi-head attention (a compiled program of the weights)."""

        def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs):
            if num_heads <= 0 or d_model % num_heads:
                raise ValueError(f"d_model and num_heads: d_model must be divisible by num_heads, got "
                                 f"d_model={d_model} and num_heads={num_heads}")
            self.num_heads = num_heads
            self.query = nnx.Linear(d_model, d_model, rngs=rngs)
            self.key = nnx.Linear(d_model, d_model, rngs=rngs)
            self.value = nnx.Linear(d_model, d_model, rngs=rngs)
            self.out = nnx.Linear(d_model, d_model, rngs=rngs)

        def __call__(self, x, context=None, mask=None):
            x = jnp.asarray(x)
            context = x if context is None else jnp.asarray(context)
            d_model, H = self.query.kernel.shape[0], self.num_heads
            for name, y in (("x", x), ("context", context)):
                if y.ndim < 2 or y.shape[-1] != d_model:
                    raise ValueError(f"{name}: expected shape [..., T, {d_model}], got {y.shape}")
            float32_only(x, "x")
            float32_only(context, "context")
            T_q, T_k = x.shape[-2], context.shape[-2]
            mask = jnp.ones((T_q, T_k), bool) if mask is None else jnp.asarray(mask).astype(bool)
            lead = jnp.broadcast_shapes(x.shape[:-2], context.shape[:-2], mask.shape[:-3])
            exported = programs.get(f"transformer/multi_head_attention/float32/{d_model}/{H}", "MultiHeadAttention")
            output = _differentiable(exported, 3, _examples)(
                weights(self, LAYERS["multi_head_attention"]),
                jnp.broadcast_to(x, (*lead, T_q, d_model)).reshape(-1, T_q, d_model),
                jnp.broadcast_to(context, (*lead, T_k, d_model)).reshape(-1, T_k, d_model),
                jnp.broadcast_to(mask, (*lead, H, T_q, T_k)).reshape(-1, H, T_q, T_k))
            return output.reshape(*lead, T_q, d_model)

    class FeedForward(nnx.Module):
        """The grader's known-good feed-forward network (a compiled program of the weights)."""

        def __init__(self, d_model: int, d_ff: int, *, rngs: nnx.Rngs):
            self.up = nnx.Linear(d_model, d_ff, rngs=rngs)
            self.down = nnx.Linear(d_ff, d_model, rngs=rngs)

        def __call__(self, x):
            x = jnp.asarray(x)
            d_model, d_ff = self.up.kernel.shape
            if x.ndim < 1 or x.shape[-1] != d_model:
                raise ValueError(f"x: expected shape [..., {d_model}], got {x.shape}")
            float32_only(x, "x")
            exported = programs.get(f"transformer/feed_forward/float32/{d_model}/{d_ff}", "FeedForward")
            output = _differentiable(exported, 2, _examples)(weights(self, LAYERS["feed_forward"]), x.reshape(-1, d_model))
            return output.reshape(x.shape)

    return _module("transformer", MultiHeadAttention=MultiHeadAttention, FeedForward=FeedForward)


def positional_encoding_module(programs: Programs) -> types.ModuleType:
    """The stand-in for ``exercises.positional_encoding.positional_encoding``."""

    def sinusoidal_positional_encoding(seq_len: int, d_model: int, base: float = 10000.0) -> jax.Array:
        """``float32[seq_len, d_model]``, the sinusoidal table (the grader's known-good version)."""
        for name, value in (("seq_len", seq_len), ("d_model", d_model)):
            if not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value}")
        if d_model % 2:
            raise ValueError(f"d_model: expected an even number, got {d_model}")
        if base != 10000.0:
            raise TypeError(f"sinusoidal_positional_encoding: the grader's known-good version covers base=10000.0, got {base}")
        exported = programs.get(f"positional_encoding/sinusoidal_positional_encoding/{d_model}", "sinusoidal_positional_encoding")
        return exported.call(jnp.zeros((int(seq_len),), bool))

    return _module("positional_encoding", sinusoidal_positional_encoding=sinusoidal_positional_encoding)


STAND_INS = {"attention": attention_module, "loss": loss_module, "transformer": transformer_module,
             "positional_encoding": positional_encoding_module}


def _module(exercise: str, **functions) -> types.ModuleType:
    module = types.ModuleType(f"exercises.{exercise}.{exercise}", f"The grader's known-good {exercise} (compiled programs).")
    module.__dict__.update(functions)
    for fn in functions.values():
        fn.__module__ = module.__name__
    return module


def stand_ins(serialized: dict[str, np.ndarray]) -> dict[str, types.ModuleType]:
    """``sys.modules`` entries (package and module) for each exercise with programs in ``serialized``.

    Raises:
      KeyError: a program's exercise has no stand-in here.
    """
    programs = Programs(serialized)
    modules: dict[str, types.ModuleType] = {}
    for exercise in sorted({key.partition("/")[0] for key in serialized}):
        module = STAND_INS[exercise](programs)
        package = types.ModuleType(f"exercises.{exercise}")
        package.__path__ = []
        setattr(package, exercise, module)
        modules[package.__name__], modules[module.__name__] = package, module
    return modules


def import_module(name: str, stand_ins: dict[str, types.ModuleType]):
    """Imports ``exercises.<name>.<name>`` afresh, with ``stand_ins`` in place of the modules they name.

    The exercise's own modules and, when there are stand-ins, every exercise
    module (the stand-ins' names and the exercises imported in between, such
    as the transformer under the encoder-decoder, imported afresh over them)
    are taken out of ``sys.modules`` for the import and put back after it, and so are the stand-ins' places in their parent packages
    (``import exercises.attention.attention as a`` reads them), so the module
    keeps what it bound at import while every other import (another
    exercise's grading, another import of this one) sees the submission's modules.
    """
    def ours(key: str) -> bool:
        return key == f"exercises.{name}" or key.startswith(f"exercises.{name}.") or bool(stand_ins) and key.startswith("exercises.")

    importlib.import_module("exercises")
    saved = {key: module for key, module in sys.modules.items() if ours(key)}
    places = [(sys.modules[parent], child) for parent, _, child in (key.rpartition(".") for key in sorted(stand_ins))
              if parent not in stand_ins]  # a stand-in package holds its module already
    bound = [(parent, child, parent.__dict__.get(child, _UNBOUND)) for parent, child in places]
    for key in saved:
        del sys.modules[key]
    sys.modules.update(stand_ins)
    for parent, child in places:
        setattr(parent, child, sys.modules[f"{parent.__name__}.{child}"])
    try:
        return importlib.import_module(f"exercises.{name}.{name}")
    finally:
        for key in [key for key in sys.modules if ours(key)]:
            del sys.modules[key]
        sys.modules.update(saved)
        for parent, child, before in bound:
            if before is _UNBOUND:
                parent.__dict__.pop(child, None)
            else:
                setattr(parent, child, before)


_UNBOUND = object()  # a parent package had no attribute of that name
