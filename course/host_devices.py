"""Splitting a CPU into virtual devices through ``XLA_FLAGS``, without importing JAX.

XLA reads ``--xla_force_host_platform_device_count`` when JAX starts its
backends; the flag only splits the host (CPU) platform, so a GPU run keeps its
GPUs and gains that many CPU devices beside them. The grader sets it for its
own process and its workers before either starts JAX (``graders/engine``), and
:func:`course.sharding.request_host_devices` for a notebook or a test session.
"""

from __future__ import annotations

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
VIRTUAL_CPU_DEVICES = 8  # the visible tests', notebooks' and grader's split of a CPU; the data-parallel test expects this many


def with_device_count(flags: str, count: int, *, replace: bool = False) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) asking for ``count`` CPU devices.

    Args:
      flags: the flags so far, separated by spaces (``""`` for none).
      count: the number of devices, a positive int.
      replace: replace a device count already in ``flags``; by default one
        already there (the user's own) is kept and ``flags`` returned unchanged.

    Raises:
      ValueError: ``count`` is not a positive int.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        raise ValueError(f"count: expected a positive int, got {count!r}")
    parts = flags.split()
    kept = [f for f in parts if not f.startswith(DEVICE_COUNT_FLAG)]
    if len(kept) < len(parts) and not replace:
        return flags
    return " ".join([*kept, f"{DEVICE_COUNT_FLAG}={count}"])
