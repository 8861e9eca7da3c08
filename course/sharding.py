"""Placing models on a device mesh for data-parallel training.

Data parallelism in JAX is a matter of placement: the batch is split along a
``data`` mesh axis (``shard_batch`` in the training exercise) and every model
and optimizer array is replicated on all devices. The compiled train step is
then partitioned by XLA's SPMD partitioner, which inserts the gradient
all-reduce itself.

On a CPU, XLA can split itself into virtual devices, so the same code runs
data parallel on a laptop; :func:`request_host_devices` asks for them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

if TYPE_CHECKING:
    from flax import nnx

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
VIRTUAL_CPU_DEVICES = 8  # the visible tests' and notebooks' split of a CPU; the data-parallel test expects this many


def request_host_devices(count: int, *, replace: bool = False) -> None:
    """Asks XLA, through ``XLA_FLAGS``, to split the CPU into ``count`` virtual devices.

    XLA reads the flag when JAX starts its backends (lazily, at the first
    computation), so this must run before then; afterwards it changes nothing.

    Args:
      count: the number of devices, a positive int.
      replace: replace a device count already in ``XLA_FLAGS``; by default one
        already there (the user's own) is kept.

    Raises:
      ValueError: ``count`` is not a positive int.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        raise ValueError(f"count: expected a positive int, got {count!r}")
    flags = os.environ.get("XLA_FLAGS", "").split()
    kept = [f for f in flags if not f.startswith(DEVICE_COUNT_FLAG)]
    if len(kept) < len(flags) and not replace:
        return
    os.environ["XLA_FLAGS"] = " ".join([*kept, f"{DEVICE_COUNT_FLAG}={count}"])


def data_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh named ``data`` over ``devices`` (default: every local device)."""
    devices = jax.local_devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def replicate(mesh: Mesh, *objects: nnx.Module | nnx.Optimizer) -> None:
    """Puts a full copy of each object's arrays (a model, an optimizer) on every device of ``mesh``."""
    from flax import nnx  # here: the visible tests' conftest imports this module, and most exercises never need flax

    replicated = NamedSharding(mesh, P())
    for obj in objects:
        state = nnx.state(obj)
        nnx.update(obj, jax.device_put(state, replicated))


def is_split_over(x, mesh: Mesh, axis: str = "data") -> bool:
    """Whether ``x`` is placed as ``NamedSharding(mesh, P(axis))``: an array on ``mesh`` with its rows split over ``axis``.

    The mesh itself is compared, not only where the rows land: on a mesh of
    one device every placement holds the same rows, and only the sharding
    tells a batch placed on the mesh from one left where it was.

    Args:
      x: any object; only a ``jax.Array`` can be placed.
      mesh: the mesh it should be placed on.
      axis: the mesh axis its first dimension should be split over.
    """
    sharding = getattr(x, "sharding", None)
    return (isinstance(x, jax.Array) and isinstance(sharding, NamedSharding) and sharding.mesh == mesh
            and sharding.is_equivalent_to(NamedSharding(mesh, P(axis)), x.ndim))
