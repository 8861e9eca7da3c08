"""One step of training, on one device or data-parallel over many.

A training step is one shape in Flax NNX: an inner ``loss_fn(model)``,
``nnx.value_and_grad`` to get the loss and the gradients with respect to the
model's parameters, and ``optimizer.update(model, grads)`` to apply them,
all compiled together with ``nnx.jit``.

Data parallelism needs no new code in the step: place the batch on a device
mesh split along its batch axis (and the model replicated), and JAX's SPMD
partitioner runs the same compiled step on every device and averages the
gradients for you.
"""

from __future__ import annotations

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from exercises.loss.loss import next_token_loss


@nnx.jit
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, tokens: jax.Array) -> jax.Array:
    """Takes one optimizer step on a batch of token sequences.

    ``logits = model(tokens)``; the loss is
    :func:`exercises.loss.loss.next_token_loss` of those logits (every token
    counted, no padding); its gradients with respect to the model's
    ``nnx.Param`` variables update the model in place through
    ``optimizer.update(model, grads)``.

    Args:
      model: any NNX module mapping ``int[B, T]`` tokens to ``float[B, T, V]`` logits.
      optimizer: ``nnx.Optimizer(model, tx, wrt=nnx.Param)``.
      tokens: ``int[B, T]``, ``T >= 2``.

    Returns:
      The float32 scalar loss *before* the update.
    """
    # BEGIN SOLUTION (hint: def loss_fn(model): return next_token_loss(model(tokens), tokens); then nnx.value_and_grad(loss_fn)(model) and optimizer.update(model, grads))
    def loss_fn(model: nnx.Module) -> jax.Array:
        return next_token_loss(model(tokens), tokens)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss
    # END SOLUTION


def shard_batch(tokens: jax.Array, mesh: Mesh) -> jax.Array:
    """Splits a batch across the devices of ``mesh`` along its ``data`` axis.

    Args:
      tokens: ``int[B, ...]``; ``B`` divisible by the size of the mesh's
        ``data`` axis.
      mesh: a ``jax.sharding.Mesh`` with an axis named ``data``.

    Returns:
      ``tokens`` placed with ``NamedSharding(mesh, PartitionSpec('data'))``:
      device ``i`` of the ``data`` axis holds rows ``i * B / n`` to
      ``(i + 1) * B / n``.

    Raises:
      ValueError: ``mesh`` has no ``data`` axis, or ``B`` is not divisible by its size.
    """
    # BEGIN SOLUTION (hint: check mesh.axis_names and mesh.shape['data'], then jax.device_put(tokens, NamedSharding(mesh, P('data'))))
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh: expected an axis named 'data', got axes {mesh.axis_names}")
    devices = mesh.shape["data"]
    if tokens.ndim < 1 or tokens.shape[0] % devices:
        raise ValueError(
            f"tokens: the batch size must be divisible by the {devices} devices of the "
            f"'data' axis, got shape {tokens.shape}"
        )
    return jax.device_put(tokens, NamedSharding(mesh, P("data")))
    # END SOLUTION
