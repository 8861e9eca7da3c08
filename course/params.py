"""An NNX module's parameters as a flat mapping of names to arrays, and back.

This is the seam between a module and everything outside it: fixtures and
checkpoints store a module's weights under these names, and tests and the
grader load them into a student's module of the same structure
(``"attn/query/kernel"``). The grader's worker keeps its own copy of the
flattening (``graders/runtime/transforms.py``), with the same names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from flax import nnx
# Otherwise flax is imported by the functions that use it: importing it costs about
# a second, and the MLP helpers (flatten_params, unflatten_params) never need it.

SEPARATOR = "/"  # as in checkpoints and the grader's wire: "blocks/0/attn/query/kernel"


def param_arrays(module: nnx.Module | nnx.Optimizer, which=None) -> dict[str, np.ndarray]:
    """``{"<path>": array}`` for every variable of ``module`` that ``which`` selects, paths joined by :data:`SEPARATOR`.

    Args:
      module: a module, or any NNX object (an optimizer).
      which: an NNX filter; ``None`` (the default) is ``nnx.Param``, the
        parameters; ``...`` for everything (an optimizer's whole state).
    """
    from flax import nnx

    return _flat(nnx.state(module, nnx.Param if which is None else which))


def load_param_arrays(module: nnx.Module | nnx.Optimizer, arrays: dict[str, np.ndarray], which=None) -> None:
    """Overwrites every variable of ``module`` that ``which`` selects with ``arrays`` (as from :func:`param_arrays`).

    Each array is cast to its variable's dtype.

    Raises:
      ValueError: the names or shapes differ from ``module``'s; the message
        lists what is missing, unexpected or misshapen.
    """
    from flax import nnx

    state = nnx.state(module, nnx.Param if which is None else which)
    expected = {SEPARATOR.join(map(str, path)): variable for path, variable in nnx.to_flat_state(state)}
    missing, unexpected = sorted(expected.keys() - arrays.keys()), sorted(arrays.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(
            f"module: parameters differ from the expected structure; missing {_few(missing)}, unexpected {_few(unexpected)}"
        )
    misshapen = [
        f"{name}: {tuple(np.shape(array))} given for a parameter of shape {tuple(expected[name].get_value().shape)}"
        for name, array in arrays.items()
        if tuple(expected[name].get_value().shape) != tuple(np.shape(array))
    ]
    if misshapen:
        raise ValueError(f"module: parameter shapes differ from the expected ones; {'; '.join(_few(misshapen))}")
    for name, variable in expected.items():
        variable.set_value(jnp.asarray(arrays[name], dtype=variable.get_value().dtype))
    nnx.update(module, state)


def arrays_under(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries of ``arrays`` named ``prefix + name``, as ``{name: array}`` (a fixture's or checkpoint's part)."""
    return {name[len(prefix):]: array for name, array in arrays.items() if name.startswith(prefix)}


def _few(names: list[str], limit: int = 8) -> list[str]:
    """At most ``limit`` of ``names``, then how many more: a whole model's names would bury the message."""
    return names if len(names) <= limit else [*names[:limit], f"... {len(names) - limit} more"]


def _flat(state: nnx.State) -> dict[str, np.ndarray]:
    from flax import nnx

    return {SEPARATOR.join(map(str, path)): np.asarray(v.get_value()) for path, v in nnx.to_flat_state(state)}


def module_vjp(
    module: nnx.Module,
    call: Callable[[nnx.Module, jax.Array], jax.Array],
    x: jax.Array,
    cotangent: jax.Array,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The output of ``call(module, x)`` and its vector-Jacobian product for ``cotangent``.

    Returns:
      ``(output, d_x, d_params)``: the output, the gradient of
      ``sum(output * cotangent)`` with respect to ``x``, and with respect to
      every ``nnx.Param`` (named as in :func:`param_arrays`).
    """
    from flax import nnx

    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def pure(params, x):
        return call(nnx.merge(graphdef, params, rest), x)

    output, vjp = jax.vjp(pure, params, x)
    d_params, d_x = vjp(cotangent)
    return np.asarray(output), np.asarray(d_x), _flat(d_params)


def flatten_params(prefix: str, params) -> dict[str, np.ndarray]:
    """``{"<prefix>.<l>.W": ..., "<prefix>.<l>.b": ...}`` for a list of ``(W, b)``."""
    out = {}
    for layer, (W, b) in enumerate(params):
        out[f"{prefix}.{layer}.W"] = np.asarray(W)
        out[f"{prefix}.{layer}.b"] = np.asarray(b)
    return out


def unflatten_params(arrays: dict[str, np.ndarray], prefix: str) -> list[tuple[jax.Array, jax.Array]]:
    """The inverse of :func:`flatten_params`, as JAX arrays."""
    params = []
    while f"{prefix}.{len(params)}.W" in arrays:
        layer = len(params)
        params.append((jnp.asarray(arrays[f"{prefix}.{layer}.W"]), jnp.asarray(arrays[f"{prefix}.{layer}.b"])))
    return params
