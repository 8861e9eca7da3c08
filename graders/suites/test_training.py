"""Grader suite for exercises/training: ``train_step`` and ``shard_batch``.

``train_step`` runs in the worker on the worker's own model and optimizer
(``course.testing.toy_model.BigramMLP`` and ``nnx.Optimizer`` built there, passed by
handle), with the reference's initial weights copied in; the reference runs
the same steps here on the same weights, optimizer and batches, and the loss
and every parameter are compared after each step.

``train_step`` is graded on its own: the student's module is imported over
the reference's ``next_token_loss`` and ``cross_entropy_loss``, exported as
programs without source (``graders.engine.known_good``), and the models are
the course's toy models, so a mistake in ``exercises/loss`` costs no point
here but the one of ``test_with_your_own_loss``, the integration case that
steps over the student's own loss and names the exercise to fix first.

``shard_batch`` runs on meshes built in the worker over its
``VIRTUAL_CPU_DEVICES`` CPU devices (every grading run has them: the grader
sets ``XLA_FLAGS`` for itself and its workers, ``graders/engine/sandbox.py``):
one ``data`` axis in the natural device order, and two axes (``data`` first
or second beside a ``model`` axis) over the devices in a drawn, non-natural
order. Each device's part of the batch is read in the worker
(``course.sharding.shards_on``, in the mesh's order) and compared with the rows
its coordinate on the ``data`` axis should hold (all of them along
``model``), and the placement itself is checked there
(``course.sharding.is_split_over``): a batch copied to every device, split
over the wrong axis or laid out in ``jax.devices()`` order fails.

The input space of the contract (the reference's docstrings): ``tokens``
``int[B, ...]`` with ``B`` divisible by the size of the mesh's ``data`` axis,
on any mesh with a ``data`` axis (one axis or several, any device order); a
mesh without one, or an indivisible batch, raises ``ValueError``.

Sizes (drawn once per grading seed): vocabulary ``V`` in 5..12, batch ``B`` in
2..4, length ``T`` in 3..8, hidden width 8; ``STEPS`` steps of each optimizer.
"""

from functools import partial

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from course.host_devices import VIRTUAL_CPU_DEVICES
from course.params import param_arrays
from course.testing.toy_model import BigramMLP, PrefixMeanLM
from graders.engine import known_good
from graders.engine.compare import check, expect_raises, known_mistakes
from graders.engine.failures import Mismatch, SubmissionFailure
from graders.runtime import wire

STEPS = 3
MAX_TRACES = 2  # times the model's Python code may run over 4 steps of one shape (compiled once: 1)


@pytest.fixture(scope="module")
def dims(suite_rng):
    """``(V, B, T)`` of this grading run."""
    return int(suite_rng.integers(5, 13)), int(suite_rng.integers(2, 5)), int(suite_rng.integers(3, 9))


@pytest.fixture(scope="module")
def building_blocks():
    """The reference's loss functions, which the student's module is imported over: the whole contract, with and
    without a mask or pad id (a step that passes pad_id=0 must get the reference's answer to it, and its hint)."""
    return known_good.loss(masked=(False, True))


def _models(student, rng, V, model_class=BigramMLP, optimizer=("adam", 0.05)):
    """The worker's model and optimizer (the reference's weights copied in) and the same pair here."""
    kwargs = {"vocab_size": V, "d_hidden": 8, "max_seq_len": 16}
    ref = model_class(**kwargs, rngs=nnx.Rngs(int(rng.integers(2**31))))
    model = student.construct(f"course.testing.toy_model.{model_class.__name__}", kwargs=kwargs, rngs_seed=0, params_follow=True)
    model.set_params(param_arrays(ref))
    name, learning_rate = optimizer
    tx = student.construct(f"optax.{name}", kwargs={"learning_rate": learning_rate})
    opt = student.construct("flax.nnx.Optimizer", model.ref, tx.ref, kwargs={"wrt": wire.Ref("flax.nnx.Param")})
    ref_opt = nnx.Optimizer(ref, getattr(optax, name)(learning_rate), wrt=nnx.Param)
    return model, opt, ref, ref_opt


@pytest.mark.points(4)
@pytest.mark.values("train_step")
@pytest.mark.parametrize("optimizer", [("adam", 0.05), ("sgd", 0.5)], ids=["adam", "sgd"])
def test_train_step_updates_like_the_reference(student, reference, rng, dims, optimizer):
    V, B, T = dims
    model, opt, ref, ref_opt = _models(student, rng, V, optimizer=optimizer)
    known = known_mistakes(reference, "train_step")
    for step in range(STEPS):
        tokens = jnp.asarray(rng.integers(0, V, (B, T)).astype(np.int32))
        before = nnx.clone((ref, ref_opt))
        waiting = student.submit("train_step", model.ref, opt.ref, np.asarray(tokens))  # the worker steps meanwhile
        want_loss = reference.train_step(ref, ref_opt, tokens)
        loss = waiting()
        # The parameters first: a step that changes nothing also returns later losses that differ.
        want = param_arrays(ref)
        check(model.get_params(), want, what=f"train_step: the parameters after step {step + 1}",
              names=[f"train_step: parameter {path} after step {step + 1}" for path in sorted(want)],
              mistakes={hint: partial(_step_with, wrong, before, tokens, "parameters") for hint, wrong in known.items()})
        check(loss, np.asarray(want_loss), what=f"train_step: the loss returned by step {step + 1}",
              mistakes={hint: partial(_step_with, wrong, before, tokens, "loss") for hint, wrong in known.items()})


def _step_with(wrong, before, tokens, what: str):
    """The parameters or the loss of a step taken by ``wrong`` (a known mistake) from a copy of ``before`` (model, optimizer)."""
    model, optimizer = nnx.clone(before)
    loss = wrong(model, optimizer, tokens)
    return param_arrays(model) if what == "parameters" else loss


@pytest.mark.points(1)
@pytest.mark.requires_values("train_step")
def test_train_step_is_compiled(student, rng, dims):
    V, B, T = dims
    model, opt, _, _ = _models(student, rng, V, model_class=PrefixMeanLM)
    for _ in range(4):
        student.train_step(model.ref, opt.ref, rng.integers(0, V, (B, T)).astype(np.int32))
    traces = int(model.call(method="call_count"))
    if traces > MAX_TRACES:
        raise Mismatch(f"train_step: the model's code ran {traces} times in 4 steps on batches of one shape "
                       f"(at most {MAX_TRACES}): compile the step with nnx.jit so that it is traced once")


@pytest.mark.points(1)
@pytest.mark.requires_values("train_step")
def test_with_your_own_loss(student, reference, rng, dims):
    """Integration: a step over the student's own ``next_token_loss`` (the other cases use the reference's)."""
    V, B, T = dims
    tokens = rng.integers(0, V, (B, T)).astype(np.int32)
    try:
        own = student.with_own_building_blocks()
        model, opt, ref, ref_opt = _models(own, rng, V, optimizer=("sgd", 0.5))
        loss = own.train_step(model.ref, opt.ref, tokens)
        want_loss = reference.train_step(ref, ref_opt, jnp.asarray(tokens))
        check(model.get_params(), param_arrays(ref), what="train_step: the parameters after a step")
        check(loss, np.asarray(want_loss), what="train_step: the loss returned by a step")
    except SubmissionFailure as failure:
        raise Mismatch(f"with your own loss: {failure}. Where the other train_step cases pass, your loss makes the "
                       "difference: fix exercises/loss first") from None


# Meshes: (axis names, shape), over the worker's CPU devices, and whether their order is drawn.
MESHES = {
    "data": ((("data",), (VIRTUAL_CPU_DEVICES,)), False),
    "data_and_model": ((("data", "model"), (VIRTUAL_CPU_DEVICES // 2, 2)), True),
    "model_and_data": ((("model", "data"), (2, VIRTUAL_CPU_DEVICES // 2)), True),
}


def _mesh(student, names, shape, order):
    """``jax.sharding.Mesh`` built in the worker: its CPU devices taken in ``order`` (indices), laid out as ``shape``."""
    devices = student.construct("jax.devices", "cpu")
    grid = student.construct("numpy.reshape", student.construct("numpy.take", devices.ref, list(order)).ref, shape)
    return student.construct("jax.sharding.Mesh", grid.ref, names)


def _order(rng, shuffled: bool) -> list[int]:
    """The devices' order: natural, or a drawn permutation that is not the natural one."""
    order = np.arange(VIRTUAL_CPU_DEVICES)
    while shuffled and (order == np.arange(VIRTUAL_CPU_DEVICES)).all():
        order = rng.permutation(VIRTUAL_CPU_DEVICES)
    return [int(i) for i in order]


def _expected_parts(tokens, names, shape) -> list[np.ndarray]:
    """The rows each device of the mesh should hold, in the mesh's order: its block of the ``data`` axis."""
    axis, size = names.index("data"), shape[names.index("data")]
    rows = len(tokens) // size
    return [tokens[coordinates[axis] * rows:(coordinates[axis] + 1) * rows] for coordinates in np.ndindex(*shape)]


@pytest.mark.points(2)
@pytest.mark.values("shard_batch")
@pytest.mark.parametrize("layout", list(MESHES))
def test_shard_batch_places_rows_on_the_data_axis(student, rng, dims, layout):
    V, _, T = dims
    (names, shape), shuffled = MESHES[layout]
    order = _order(rng, shuffled)
    tokens = rng.integers(0, V, (2 * shape[names.index("data")], T)).astype(np.int32)
    mesh = _mesh(student, names, shape, order)
    where = f"on a mesh of axes {names}, shape {list(shape)}, devices in the order {order}"
    placed = student.construct("shard_batch", tokens, mesh.ref)
    check(placed.call(method="__array__"), tokens, what=f"shard_batch {where}: the values of the batch")
    # Read in the worker, where the array lives; a partial of a course function is an object there whose call
    # answers with plain data (arrays, a bool), not with a handle.
    parts = student.construct("functools.partial", wire.Ref("course.sharding.shards_on")).call(placed.ref, mesh.ref)
    for device, (part, want) in enumerate(zip(parts, _expected_parts(tokens, names, shape), strict=True)):
        if part is None:
            raise Mismatch(f"shard_batch {where}: device {device} of the mesh holds no part of the batch")
        check(part, want, what=f"shard_batch {where}: the rows held by device {device} of the mesh "
                               f"(its block of the data axis, the same along the other axes)")
    is_split_over = student.construct("functools.partial", wire.Ref("course.sharding.is_split_over"))
    if is_split_over.call(placed.ref, mesh.ref) is not True:
        raise Mismatch(f"shard_batch {where}: expected a jax.Array placed with NamedSharding(mesh, PartitionSpec('data')) "
                       "on the mesh it was given (jax.device_put)")


@pytest.mark.points(1)
@pytest.mark.requires_values("shard_batch")
def test_shard_batch_rejects_bad_meshes(student, rng, dims):
    V, _, T = dims
    (names, shape), _ = MESHES["model_and_data"]
    tokens = rng.integers(0, V, (2 * shape[1], T)).astype(np.int32)
    expect_raises(student, "shard_batch", (tokens, _mesh(student, ("model",), (VIRTUAL_CPU_DEVICES,), _order(rng, False)).ref),
                  error="ValueError", why="a mesh without a 'data' axis")
    expect_raises(student, "shard_batch", (tokens[:-1], _mesh(student, names, shape, _order(rng, True)).ref),
                  error="ValueError", why=f"a batch of {len(tokens) - 1} rows on a data axis of {shape[1]} devices")
