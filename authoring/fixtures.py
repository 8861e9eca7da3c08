"""The visible tests' fixtures: inputs from numpy generators, expected values from the reference.

``course fixtures`` writes ``exercises/<name>/fixtures.npz`` for every exercise;
``course fixtures --check`` (and a project test) fails when a committed file is
stale. Inputs come from :func:`numpy.random.default_rng` with a fixed seed per
exercise, never from ``jax.random``, whose streams change between releases.
Each file is a flat mapping of names to arrays (``"<case>.<quantity>"``; a
module's parameters ``"<case>.params.<path>"`` with the paths of
:func:`course.params.param_arrays`, ``"block.params.attn/query/kernel"``), stored
without pickles; gradients are vector-Jacobian products for a stored cotangent.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from course import catalog, submission
from course.params import flatten_params, load_param_arrays, module_vjp, param_arrays
from course.testing import FIXTURES_FILE
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


def _jax_basics(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    params = mlp_params(rng, (4, 8, 8, 3))
    inputs, targets = normal(rng, 6, 4), normal(rng, 6, 3)
    jparams = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]
    batch = (jnp.asarray(inputs), jnp.asarray(targets))
    loss, grads = ref.loss_and_grad(jparams, batch)
    return {
        **flatten_params("params", params),
        "inputs": inputs,
        "targets": targets,
        "predict.output": np.asarray(ref.predict(jparams, batch[0])),
        "mse_loss.output": np.asarray(ref.mse_loss(jparams, batch)),
        "loss_and_grad.loss": np.asarray(loss),
        **flatten_params("loss_and_grad.grads", grads),
        **flatten_params("per_example_grads.grads", ref.per_example_grads(jparams, batch)),
    }


def _positional_encoding(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    return {
        "default.output": np.asarray(ref.sinusoidal_positional_encoding(50, 16)),
        "base100.output": np.asarray(ref.sinusoidal_positional_encoding(7, 6, base=100.0)),
    }


def _attention(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    B, H, T_q, T_k, d_k, d_v = 2, 3, 5, 6, 8, 4
    q, k, v = normal(rng, B, H, T_q, d_k), normal(rng, B, H, T_k, d_k), normal(rng, B, H, T_k, d_v)
    mask = rng.random((B, 1, T_q, T_k)) < 0.6
    mask[..., 0] = True  # every query sees at least one key: fully masked rows are undefined
    ct = normal(rng, B, H, T_q, d_v)
    out: Arrays = {"query": q, "key": k, "value": v, "mask": mask, "cotangent": ct}
    for case, case_mask in (("unmasked", None), ("masked", jnp.asarray(mask))):
        def attend(q, k, v, case_mask=case_mask):
            return ref.scaled_dot_product_attention(q, k, v, case_mask)
        (output, weights), vjp = jax.vjp(attend, jnp.asarray(q), jnp.asarray(k), jnp.asarray(v))
        grads = vjp((jnp.asarray(ct), jnp.zeros_like(weights)))
        out |= {f"{case}.output": np.asarray(output), f"{case}.weights": np.asarray(weights)}
        out |= {f"{case}.grad_{n}": np.asarray(g) for n, g in zip(("query", "key", "value"), grads)}
    out["causal_mask.output"] = np.asarray(ref.causal_mask(T_k))
    return out


def _loss(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    B, T, V = 3, 9, 13
    logits = normal(rng, B, T, V) * np.float32(3.0)
    targets = rng.integers(0, V, (B, T)).astype(np.int32)
    mask = rng.random((B, T)) < 0.7
    tokens = rng.integers(0, V, (B, T)).astype(np.int32)
    tokens[:, -3:] = 0  # right padding with pad_id 0
    out: Arrays = {"logits": logits, "targets": targets, "mask": mask, "tokens": tokens}
    cases: dict[str, Callable[[jax.Array], jax.Array]] = {
        "cross_entropy": lambda z: ref.cross_entropy_loss(z, jnp.asarray(targets)),
        "cross_entropy_masked": lambda z: ref.cross_entropy_loss(z, jnp.asarray(targets), jnp.asarray(mask)),
        "next_token": lambda z: ref.next_token_loss(z, jnp.asarray(tokens)),
        "next_token_pad0": lambda z: ref.next_token_loss(z, jnp.asarray(tokens), pad_id=0),
    }
    for case, fn in cases.items():
        value, grad = jax.value_and_grad(fn)(jnp.asarray(logits))
        out[f"{case}.output"], out[f"{case}.grad_logits"] = np.asarray(value), np.asarray(grad)
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
        out |= {f"{case}.output": output, f"{case}.grad_x": d_x}
        out |= {f"{case}.grad_params.{k}": v for k, v in d_params.items()}
    return out


def _training(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    model = BigramMLP(**TOY, rngs=nnx.Rngs(0))
    weights = random_params(model, rng, scale=1.0)
    load_param_arrays(model, weights)
    optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)
    batches = rng.integers(0, TOY["vocab_size"], (3, 4, 10)).astype(np.int32)
    losses = [np.asarray(ref.train_step(model, optimizer, jnp.asarray(b))) for b in batches]
    return {
        "tokens": batches,
        "losses": np.stack(losses),
        **{f"params.{k}": v for k, v in weights.items()},
        **{f"trained.{k}": v for k, v in param_arrays(model).items()},
    }


def _generation(ref: ModuleType, rng: np.random.Generator) -> Arrays:
    model = BigramMLP(**TOY, rngs=nnx.Rngs(0))
    weights = random_params(model, rng, scale=3.0)
    load_param_arrays(model, weights)
    prompt = rng.integers(0, TOY["vocab_size"], (3, 4)).astype(np.int32)
    greedy = ref.generate(model, jnp.asarray(prompt), 10, jax.random.key(0), temperature=0.0)
    return {"prompt": prompt, "greedy": np.asarray(greedy), **{f"params.{k}": v for k, v in weights.items()}}


BUILDERS: dict[str, Callable[[ModuleType, np.random.Generator], Arrays]] = {
    "jax_basics": _jax_basics,
    "positional_encoding": _positional_encoding,
    "attention": _attention,
    "loss": _loss,
    "transformer": _transformer,
    "training": _training,
    "generation": _generation,
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
    """Why ``committed`` is not ``fresh`` (inputs exact, outputs to float32 round-off), or None."""
    if committed.keys() != fresh.keys():
        return f"names differ: {sorted(committed.keys() ^ fresh.keys())}"
    for name, want in fresh.items():
        got = committed[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            return f"{name}: {got.dtype}{list(got.shape)} != {want.dtype}{list(want.shape)}"
        if not np.allclose(got, want, rtol=1e-6, atol=1e-6):
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
