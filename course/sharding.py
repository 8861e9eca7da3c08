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

from course.host_devices import VIRTUAL_CPU_DEVICES, with_device_count  # noqa: F401  (VIRTUAL_CPU_DEVICES: the visible tests import it here)

if TYPE_CHECKING:
    from flax import nnx


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
    os.environ["XLA_FLAGS"] = with_device_count(os.environ.get("XLA_FLAGS", ""), count, replace=replace)


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


def shards_on(x, mesh: Mesh) -> list[np.ndarray | None]:
    """The part of ``x`` each device of ``mesh`` holds, in the mesh's order (``mesh.devices.flat``).

    Where the rows of a batch went, device by device: with
    :func:`is_split_over` it tells a right placement from rows split over the
    wrong axis, copied to every device or laid out in another device order.

    Args:
      x: any object; only a ``jax.Array`` has parts on devices.
      mesh: the mesh whose devices are read.

    Returns:
      One entry per device of ``mesh``: the ``numpy`` array of its part, or
      ``None`` where it holds no part of ``x``.
    """
    held = {shard.device: shard.data for shard in getattr(x, "addressable_shards", ())}
    return [None if device not in held else np.asarray(held[device]) for device in mesh.devices.flat]

