"""The visible tests' fixtures: inputs from numpy generators, expected values from the reference.

``course fixtures`` writes ``exercises/<name>/fixtures.npz`` for every exercise;
``course fixtures --check`` (and a project test) fails when a committed file is
stale. Inputs come from :func:`numpy.random.default_rng` with a fixed seed per
exercise, never from ``jax.random``, whose streams change between releases.
Each file is a flat mapping of names to arrays (``"<case>.<quantity>"``; a
module's parameters ``"<case>.params.<path>"`` with the paths of
:func:`course.params.param_arrays`, ``"block.params.attn/query/kernel"``), stored
without pickles; gradients are vector-Jacobian products for a stored cotangent.

Beside a case's outputs, the reference's outputs under each known mistake of
:mod:`course.mistakes` (``"<key>.mistake.<name>"``, where they differ from
``<key>``'s), so that a visible test names the mistake a student's values
match (``course.testing.stored_mistakes``).
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from course import catalog, mistakes, submission
from course.params import flatten_params, load_param_arrays, module_vjp, param_arrays
from course.testing import FIXTURES_FILE, describe_mismatch, mistake_key, tolerance
from course.testing.toy_model import TOY, BigramMLP

Arrays = dict[str, np.ndarray]


def rng_for(name: str) -> np.random.Generator:
    """A generator seeded by the exercise name, so each file is reproducible on its own."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """``float32[shape]`` standard normal samples."""
    return rng.standard_normal(shape).astype(np.float32)


def mlp_params(rng: np.random.Generator, sizes: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W, b), ...]`` for layer widths ``sizes``, scaled by ``1/sqrt(fan_in)``."""
    return [
        (normal(rng, d_in, d_out) / np.float32(np.sqrt(d_in)), normal(rng, d_out) * np.float32(0.1))
        for d_in, d_out in zip(sizes[:-1], sizes[1:])
    ]


def reference_function(ref: ModuleType, function: str) -> Callable:
    """The reference's ``function``; for an NNX module class its ``__call__``, which takes the module first."""
    found = getattr(ref, function)
    return found.__call__ if isinstance(found, type) else found


def with_mistakes(ref: ModuleType, exercise: str, function: str, arrays: Callable[[Callable], Arrays],
                  right: Arrays | None = None) -> Arrays:
    """``arrays(f)`` for the reference's ``function``, and for each known mistake of it the arrays that differ.

    Args:
      arrays: the fixture arrays of a case, computed with ``f`` in the
        reference's function's place.
      right: the reference's arrays, when computed elsewhere (with gradients);
        default ``arrays`` of the reference's function.

    Returns:
      ``right``, and ``"<key>.mistake.<name>"`` for each mistake and key
      whose values are not the right ones within the course's tolerance.
    """
    right = arrays(reference_function(ref, function)) if right is None else right
    out = dict(right)
    for mistake in mistakes.of(exercise, function):
        with np.errstate(all="ignore"):
            wrong = arrays(mistake.wrong(ref))
        for key, values in wrong.items():
            values = np.asarray(values)
            if describe_mismatch(values, right[key], what=key) is not None:
                out[mistake_key(key, mistake.name)] = values
    return out


def _jax_basics(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    params = mlp_params(rng, (4, 8, 8, 3))
    inputs, targets = normal(rng, 6, 4), normal(rng, 6, 3)
    jparams = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]
    batch = (jnp.asarray(inputs), jnp.asarray(targets))

    def loss_and_grad(f):
        loss, grads = f(jparams, batch)
        return {"loss_and_grad.loss": np.asarray(loss), **flatten_params("loss_and_grad.grads", grads)}

    cases: dict[str, Callable[[Callable], Arrays]] = {
        "predict": lambda f: {"predict.output": np.asarray(f(jparams, batch[0]))},
        "mse_loss": lambda f: {"mse_loss.output": np.asarray(f(jparams, batch))},
        "loss_and_grad": loss_and_grad,
        "per_example_grads": lambda f: flatten_params("per_example_grads.grads", f(jparams, batch)),
    }
    out = {**flatten_params("params", params), "inputs": inputs, "targets": targets}
    for function, arrays in cases.items():
        out |= with_mistakes(ref, "jax_basics", function, arrays)
    return out


def _positional_encoding(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    return with_mistakes(ref, "positional_encoding", "sinusoidal_positional_encoding", lambda f: {
        "default.output": np.asarray(f(50, 16)),
        "base100.output": np.asarray(f(7, 6, base=100.0)),
    })


def _attention(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    B, H, T_q, T_k, d_k, d_v = 2, 3, 5, 6, 8, 4
    q, k, v = normal(rng, B, H, T_q, d_k), normal(rng, B, H, T_k, d_k), normal(rng, B, H, T_k, d_v)
    mask = rng.random((B, 1, T_q, T_k)) < 0.6
    mask[..., 0] = True  # every query sees at least one key: fully masked rows are undefined
    ct = normal(rng, B, H, T_q, d_v)
    out: Arrays = {"query": q, "key": k, "value": v, "mask": mask, "cotangent": ct}
    cases, right = (("unmasked", None), ("masked", jnp.asarray(mask))), {}
    for case, case_mask in cases:
        def attend(q, k, v, case_mask=case_mask):
            return ref.scaled_dot_product_attention(q, k, v, case_mask)
        (output, weights), vjp = jax.vjp(attend, jnp.asarray(q), jnp.asarray(k), jnp.asarray(v))
        grads = vjp((jnp.asarray(ct), jnp.zeros_like(weights)))
        right |= {f"{case}.output": np.asarray(output), f"{case}.weights": np.asarray(weights)}
        out |= {f"{case}.grad_{n}": np.asarray(g) for n, g in zip(("query", "key", "value"), grads)}

    def forward(f):
        arrays = {}
        for case, case_mask in cases:
            output, weights = f(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), case_mask)
            arrays |= {f"{case}.output": np.asarray(output), f"{case}.weights": np.asarray(weights)}
        return arrays

    out |= with_mistakes(ref, "attention", "scaled_dot_product_attention", forward, right=right)
    out |= with_mistakes(ref, "attention", "causal_mask", lambda f: {"causal_mask.output": np.asarray(f(T_k))})
    return out


def _loss(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    B, T, V = 3, 9, 13
    logits = normal(rng, B, T, V) * np.float32(3.0)
    targets = rng.integers(0, V, (B, T)).astype(np.int32)
    mask = rng.random((B, T)) < 0.7
    tokens = rng.integers(0, V, (B, T)).astype(np.int32)
    tokens[:, -3:] = 0  # right padding with pad_id 0
    # Logits whose exp overflows float32: the loss is (1e4 + log 2) / 2 only when the maximum is subtracted first.
    large, large_targets = np.asarray([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], np.float32), np.asarray([1, 2], np.int32)
    out: Arrays = {"logits": logits, "targets": targets, "mask": mask, "tokens": tokens,
                   "large.logits": large, "large.targets": large_targets}
    cases: dict[str, tuple[str, Callable[[Callable, jax.Array], jax.Array]]] = {
        "cross_entropy": ("cross_entropy_loss", lambda f, z: f(z, jnp.asarray(targets))),
        "cross_entropy_masked": ("cross_entropy_loss", lambda f, z: f(z, jnp.asarray(targets), jnp.asarray(mask))),
        "next_token": ("next_token_loss", lambda f, z: f(z, jnp.asarray(tokens))),
        "next_token_pad0": ("next_token_loss", lambda f, z: f(z, jnp.asarray(tokens), pad_id=0)),
    }
    for case, (function, loss) in cases.items():
        def arrays(f, case=case, loss=loss):
            value, grad = jax.value_and_grad(lambda z: loss(f, z))(jnp.asarray(logits))
            return {f"{case}.output": np.asarray(value), f"{case}.grad_logits": np.asarray(grad)}
        out |= with_mistakes(ref, "loss", function, arrays)
    out |= with_mistakes(ref, "loss", "cross_entropy_loss",
                         lambda f: {"large.output": np.asarray(f(jnp.asarray(large), jnp.asarray(large_targets)))})
    return out


def random_params(module: nnx.Module, rng: np.random.Generator, scale: float = 0.5) -> Arrays:
    """Numpy-drawn values for every parameter of ``module``: biases and LayerNorm offsets
    small normals, kernels and embeddings ``scale / sqrt(fan_in)`` normals, LayerNorm scales near one."""
    out = {}
    for name, value in param_arrays(module).items():
        if name.endswith("scale"):
            out[name] = (1.0 + 0.1 * rng.standard_normal(value.shape)).astype(np.float32)
        elif name.endswith("bias"):
            out[name] = normal(rng, *value.shape) * np.float32(0.1)
        else:
            out[name] = normal(rng, *value.shape) * np.float32(scale / np.sqrt(value.shape[0]))
    return out


def _transformer(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    B, T, S, d_model, heads, d_ff = 2, 5, 7, 16, 4, 24
    x, context = normal(rng, B, T, d_model), normal(rng, B, S, d_model)
    out: Arrays = {"x": x, "context": context, "cotangent": normal(rng, B, T, d_model)}
    causal = np.tril(np.ones((T, T), bool))
    cases = {
        "mha_self": (lambda r: ref.MultiHeadAttention(d_model, heads, rngs=r), lambda m, x: m(x)),
        "mha_causal": (lambda r: ref.MultiHeadAttention(d_model, heads, rngs=r), lambda m, x: m(x, mask=jnp.asarray(causal))),
        "mha_cross": (lambda r: ref.MultiHeadAttention(d_model, heads, rngs=r), lambda m, x: m(x, context=jnp.asarray(context))),
        "ffn": (lambda r: ref.FeedForward(d_model, d_ff, rngs=r), lambda m, x: m(x)),
        "block": (lambda r: ref.DecoderBlock(d_model, heads, d_ff, rngs=r), lambda m, x: m(x, jnp.asarray(causal))),
    }
    for case, (make, call) in cases.items():
        module = make(nnx.Rngs(0))  # the structure only: every value is replaced from numpy
        weights = random_params(module, rng)
        load_param_arrays(module, weights)
        output, d_x, d_params = module_vjp(module, call, jnp.asarray(x), jnp.asarray(out["cotangent"]))
        out |= {f"{case}.params.{k}": v for k, v in weights.items()}
        out |= {f"{case}.grad_x": d_x} | {f"{case}.grad_params.{k}": v for k, v in d_params.items()}

        def arrays(f, case=case, module=module, call=call):
            # f takes the module first, like __call__: bound to this module, it is called like the module.
            return {f"{case}.output": np.asarray(call(partial(f, module), jnp.asarray(x)))}

        out |= with_mistakes(ref, "transformer", type(module).__name__, arrays, right={f"{case}.output": output})
    return out


def _training(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    weights = random_params(BigramMLP(**TOY, rngs=nnx.Rngs(0)), rng, scale=1.0)
    batches = rng.integers(0, TOY["vocab_size"], (3, 4, 10)).astype(np.int32)

    def three_steps(step):
        model = BigramMLP(**TOY, rngs=nnx.Rngs(0))
        load_param_arrays(model, weights)
        optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)
        losses = [np.asarray(step(model, optimizer, jnp.asarray(b))) for b in batches]
        return {"losses": np.stack(losses), **{f"trained.{k}": v for k, v in param_arrays(model).items()}}

    return {
        "tokens": batches,
        **{f"params.{k}": v for k, v in weights.items()},
        **with_mistakes(ref, "training", "train_step", three_steps),
    }


def _generation(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    model = BigramMLP(**TOY, rngs=nnx.Rngs(0))
    weights = random_params(model, rng, scale=3.0)
    load_param_arrays(model, weights)
    prompt = rng.integers(0, TOY["vocab_size"], (3, 4)).astype(np.int32)
    greedy = ref.generate(model, jnp.asarray(prompt), 10, jax.random.key(0), temperature=0.0)
    return {"prompt": prompt, "greedy": np.asarray(greedy), **{f"params.{k}": v for k, v in weights.items()}}


def _encoder_decoder(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    B, S, T, d_model, heads, d_ff, vocab = 3, 6, 5, 16, 4, 24, 13
    lengths = np.asarray([6, 4, 2])  # each example hides another number of source positions
    source_mask = np.arange(S) < lengths[:, None]
    source = np.where(source_mask, rng.integers(3, vocab, (B, S)), 0).astype(np.int32)
    target = np.concatenate([np.ones((B, 1)), rng.integers(3, vocab, (B, T))], axis=1).astype(np.int32)
    target[1, 4:], target[2, 3:] = 0, 0  # padded targets: not counted by the loss
    x, memory = normal(rng, B, S, d_model), normal(rng, B, S, d_model)
    out: Arrays = {"source": source, "target": target, "source_mask": source_mask, "x": x, "memory": memory,
                   "cotangent": normal(rng, B, S, d_model)}
    mask, mem = jnp.asarray(source_mask), jnp.asarray(memory)
    blocks = {
        "encoder": (lambda r: ref.EncoderBlock(d_model, heads, d_ff, rngs=r), lambda m, x: m(x, mask)),
        "decoder": (lambda r: ref.CrossAttentionDecoderBlock(d_model, heads, d_ff, rngs=r), lambda m, x: m(x[:, :T], mem, mask)),
    }
    for case, (make, call) in blocks.items():
        module = make(nnx.Rngs(0))
        weights = random_params(module, rng)
        load_param_arrays(module, weights)
        cotangent = out["cotangent"][:, :T] if case == "decoder" else out["cotangent"]  # the block's output shape
        output, d_x, d_params = module_vjp(module, call, jnp.asarray(x), jnp.asarray(cotangent))
        out |= {f"{case}.params.{k}": v for k, v in weights.items()}
        out |= {f"{case}.grad_x": d_x} | {f"{case}.grad_params.{k}": v for k, v in d_params.items()}

        def arrays(f, case=case, module=module, call=call):
            return {f"{case}.output": np.asarray(call(partial(f, module), jnp.asarray(x)))}

        out |= with_mistakes(ref, "encoder_decoder", type(module).__name__, arrays, right={f"{case}.output": output})
    model = ref.EncoderDecoder(vocab, d_model, heads, d_ff, 2, rngs=nnx.Rngs(0))
    weights = random_params(model, rng, scale=2.0)  # sharp logits: greedy choices far from ties
    load_param_arrays(model, weights)
    src, tgt = jnp.asarray(source), jnp.asarray(target)
    loss, grads = nnx.jit(nnx.value_and_grad(lambda m: m.loss(src, tgt)))(model)
    out |= {f"model.params.{k}": v for k, v in weights.items()}
    out |= {"model.logits": np.asarray(nnx.jit(lambda m: m(src, tgt[:, :-1]))(model)),
            "model.greedy": np.asarray(ref.greedy_decode(model, src, T, 1))}
    out |= {f"model.grad_params.{k}": v for k, v in param_arrays(grads).items()}
    out |= with_mistakes(ref, "encoder_decoder", "EncoderDecoder", lambda f: {"model.loss": np.asarray(f(model, src, tgt))},
                         right={"model.loss": np.asarray(loss)})
    return out


BUILDERS: dict[str, Callable[[ModuleType, np.random.Generator], Arrays]] = {
    "jax_basics": _jax_basics,
    "positional_encoding": _positional_encoding,
    "attention": _attention,
    "loss": _loss,
    "transformer": _transformer,
    "training": _training,
    "generation": _generation,
    "encoder_decoder": _encoder_decoder,
}


def build(exercise: catalog.Exercise, reference: Path) -> Arrays:
    """The fixture arrays of ``exercise``, computed with ``reference``'s code."""
    with submission.active(reference), jax.default_matmul_precision("highest"):
        return BUILDERS[exercise.name](importlib.import_module(exercise.module), rng_for(exercise.name))


@dataclass(frozen=True)
class FixtureUpdate:
    path: Path
    stale: str | None  # why the committed file differs, or None when it is current


def compare(committed: Arrays, fresh: Arrays) -> str | None:
    """Why ``committed`` is not ``fresh``, or None.

    Values agree to a tenth of the course's relative output tolerance and its
    absolute one (``course.testing.tolerance``): another CPU rounds the deeper
    models' outputs differently by a few float32 ulps (up to 5e-6 on logits of
    5), which is no reason to rebuild fixtures; any change of the reference's
    semantics is far larger. Inputs drawn here compare equal to that tolerance too.
    """
    if committed.keys() != fresh.keys():
        return f"names differ: {sorted(committed.keys() ^ fresh.keys())}"
    for name, want in fresh.items():
        got = committed[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            return f"{name}: {got.dtype}{list(got.shape)} != {want.dtype}{list(want.shape)}"
        inexact = jnp.issubdtype(want.dtype, jnp.inexact)
        bounds = tolerance(want.dtype) if inexact else {"rtol": 0.0, "atol": 0.0}  # integers and masks exactly
        if not np.allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=bounds["rtol"] / 10,
                           atol=bounds["atol"]):
            return f"{name}: values differ"
    return None


def sync(reference: Path, exercises: Path, *, write: bool) -> list[FixtureUpdate]:
    """Builds every exercise's fixtures; writes the stale ones when ``write``."""
    updates = []
    for exercise in catalog.EXERCISES:
        if exercise.name not in BUILDERS:
            continue
        path = exercises / exercise.name / FIXTURES_FILE
        fresh = build(exercise, reference)
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                stale = compare({k: data[k] for k in data.files}, fresh)
        else:
            stale = "missing"
        if stale and write:
            np.savez_compressed(path, **fresh)
        updates.append(FixtureUpdate(path, stale))
    return updates
