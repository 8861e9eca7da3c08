"""Placing models on a device mesh for data-parallel training.

Data parallelism in JAX is a matter of placement: the batch is split along a
``data`` mesh axis (``shard_batch`` in the training exercise) and every model
and optimizer array is replicated on all devices. The compiled train step is
then partitioned by XLA's SPMD partitioner, which inserts the gradient
all-reduce itself.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def data_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh named ``data`` over ``devices`` (default: every local device)."""
    devices = jax.local_devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def replicate(mesh: Mesh, *objects: nnx.Module | nnx.Optimizer) -> None:
    """Puts a full copy of each object's arrays (a model, an optimizer) on every device of ``mesh``."""
    replicated = NamedSharding(mesh, P())
    for obj in objects:
        state = nnx.state(obj)
        nnx.update(obj, jax.device_put(state, replicated))
