"""Visible tests for exercises/training: run them with ``pytest exercises/training``.

The model is :class:`course.testing.toy_model.BigramMLP`, a tiny language model that
needs none of your other exercises, with weights from the fixture.

The tests share one optimizer (``ADAM``) and batch shape, so ``train_step``
compiles once for all of them; only the trace-counting model and the
data-parallel step compile programs of their own.
"""

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh

from course.params import arrays_under, module_with_params, param_arrays
from course.sharding import data_mesh, replicate
from course.testing import assert_close, load_fixtures, stored_mistakes
from course.testing.toy_model import TOY, BigramMLP
from exercises.training.training import shard_batch, train_step

FX = load_fixtures(__file__)
# jax.device_put, unlike jnp.asarray, copies a NumPy array to the device without compiling a program.
BATCHES = [jax.device_put(tokens) for tokens in FX["tokens"]]  # three int32[4, 10]
# One optimizer for every test: a new optax.adam(...) is a new static part of the step, which nnx.jit traces again.
ADAM = optax.adam(0.05)
# The optimizer's initial state as one compiled program; built eagerly, each of its arrays would be one.
new_optimizer = nnx.jit(lambda model: nnx.Optimizer(model, ADAM, wrt=nnx.Param))


def fresh_model_and_optimizer(model_class=BigramMLP):
    model = module_with_params(lambda: model_class(**TOY, rngs=nnx.Rngs(0)), arrays_under(FX, "params."))
    return model, new_optimizer(model)


def test_three_steps_match_reference():
    model, optimizer = fresh_model_and_optimizer()
    for step, tokens in enumerate(BATCHES):
        loss = train_step(model, optimizer, tokens)
        mistakes = {hint: losses[step] for hint, losses in stored_mistakes(FX, "losses").items()}
        assert_close(loss, FX["losses"][step], what=f"loss returned by step {step} (the loss before that step's update)",
                     mistakes=mistakes)
    for name, value in param_arrays(model).items():
        assert_close(value, FX[f"trained.{name}"], what=f"parameter {name} after three steps (is optimizer.update(model, grads) called?)",
                     mistakes=stored_mistakes(FX, f"trained.{name}"))


def test_parameters_change():
    model, optimizer = fresh_model_and_optimizer()
    before = param_arrays(model)
    train_step(model, optimizer, BATCHES[0])
    unchanged = [n for n, v in param_arrays(model).items() if np.array_equal(v, before[n])]
    assert not unchanged, f"parameters not updated by train_step: {unchanged}"


def test_train_step_compiles_once():
    traces = []

    class Counting(BigramMLP):
        def __call__(self, tokens):
            traces.append(tokens.shape)  # Python runs only while JAX traces
            return super().__call__(tokens)

    model, optimizer = fresh_model_and_optimizer(Counting)
    per_step = []
    for tokens in BATCHES:
        before = len(traces)
        train_step(model, optimizer, tokens)
        per_step.append(len(traces) - before)
    # The first step traces (the model may be called more than once in that trace); later steps reuse the program.
    traced_once = per_step[0] >= 1 and not any(per_step[1:])
    assert traced_once, (
        f"the model ran in Python at steps {[i for i, n in enumerate(per_step) if n]} of {len(per_step)}: train_step is "
        "traced again at every step; compile it once with nnx.jit (same shapes, same program)")


def test_shard_batch_splits_rows_over_the_data_axis():
    mesh = data_mesh()
    n = len(mesh.devices.flat)
    tokens = jax.device_put(np.arange(n * 2 * 3, dtype=np.int32).reshape(n * 2, 3))
    sharded = shard_batch(tokens, mesh)
    assert_close(sharded, np.asarray(tokens), what="shard_batch must not change the values")
    rows = sorted((s.index[0].start or 0, s.data.shape) for s in sharded.addressable_shards)
    expected = [(2 * i, (2, 3)) for i in range(n)]
    assert rows == expected, f"shards (first row, shape): expected 2 rows on each of {n} devices, got {rows}"


def test_data_parallel_step_equals_single_device_step():
    devices = jax.local_devices()
    if devices[0].platform == "cpu":
        count = len(devices)
        assert count == 8, f"expected 8 virtual CPU devices, got {count} (exercises/conftest.py sets XLA_FLAGS)"
    mesh = data_mesh(devices)
    single_model, single_opt = fresh_model_and_optimizer()
    parallel_model, parallel_opt = fresh_model_and_optimizer()
    replicate(mesh, parallel_model, parallel_opt)
    # A batch of 4 * devices rows, the 4 of BATCHES[0] repeated: its mean loss and gradients are those of
    # BATCHES[0], so the single-device step on BATCHES[0] (compiled already) is the one to match.
    tokens = jax.device_put(np.concatenate([FX["tokens"][0]] * len(devices)))
    single_loss = train_step(single_model, single_opt, BATCHES[0])
    parallel_loss = train_step(parallel_model, parallel_opt, shard_batch(tokens, mesh))
    assert_close(parallel_loss, np.asarray(single_loss), what="data-parallel loss")
    single = param_arrays(single_model)
    for name, value in param_arrays(parallel_model).items():
        assert_close(value, single[name], what=f"parameter {name} after a data-parallel step")


def test_shard_batch_bad_input():
    devices = np.asarray(jax.local_devices()[:1])
    with pytest.raises(ValueError, match="data"):
        shard_batch(jax.device_put(np.zeros((4, 3), np.int32)), Mesh(devices, ("batch",)))
    if len(jax.local_devices()) > 1:
        with pytest.raises(ValueError):
            shard_batch(jax.device_put(np.zeros((len(jax.local_devices()) + 1, 3), np.int32)), data_mesh())
