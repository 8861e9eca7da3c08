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

    Each array is cast to its variable's dtype. The variables may hold
    ``jax.ShapeDtypeStruct`` placeholders (a module from ``nnx.eval_shape``):
    only their shapes and dtypes are read.

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
        # Cast on the host and copied over: jnp.asarray would compile a program per shape.
        variable.set_value(jax.device_put(np.asarray(arrays[name], dtype=variable.get_value().dtype)))
    nnx.update(module, state)


def param_specs(module: nnx.Module) -> dict[str, jax.ShapeDtypeStruct]:
    """``{"<path>": jax.ShapeDtypeStruct(shape, dtype)}`` for every ``nnx.Param`` of ``module``, named as by
    :func:`param_arrays`.

    Reads only shapes and dtypes, so ``module`` may be abstract (from :func:`abstract_module`).
    """
    from flax import nnx

    return {SEPARATOR.join(map(str, path)): jax.ShapeDtypeStruct(tuple(v.get_value().shape), v.get_value().dtype)
            for path, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def param_shapes(module: nnx.Module) -> dict[str, tuple[int, ...]]:
    """``{"<path>": shape}`` for every ``nnx.Param`` of ``module`` (see :func:`param_specs`)."""
    return {path: spec.shape for path, spec in param_specs(module).items()}


def abstract_module(make: Callable[[], nnx.Module]) -> nnx.Module:
    """``make()``, built by ``nnx.eval_shape``: its arrays are ``jax.ShapeDtypeStruct`` placeholders.

    Nothing is computed, so nothing is compiled: built for real, every random
    initial weight is a program of its own. A constructor that needs concrete
    values (``float(jnp.sqrt(d))``) cannot run abstractly; that module is built
    for real.
    """
    from flax import nnx

    try:
        return nnx.eval_shape(make)
    except (jax.errors.JAXTypeError, jax.errors.JAXIndexError):
        return make()


def module_with_params(make: Callable[[], nnx.Module], arrays: dict[str, np.ndarray], *,
                       abstract: nnx.Module | None = None) -> nnx.Module:
    """``make()`` with its parameters overwritten by ``arrays`` (see :func:`load_param_arrays`).

    Built by :func:`abstract_module` (its random initial weights are never
    computed, since they are replaced) when the parameters are all it holds;
    a module that also holds other arrays (a random stream, a constant made in
    ``__init__``) is built for real, so that those keep their values.

    Args:
      abstract: ``abstract_module(make)`` when the caller has it already
        (it is copied, not changed).
    """
    from flax import nnx

    module = abstract_module(make) if abstract is None else nnx.clone(abstract)
    if not _only_params(module):
        module = make()
    load_param_arrays(module, arrays)
    return module


def _only_params(module: nnx.Module) -> bool:
    """Whether every array in ``module`` is the value of an ``nnx.Param``."""
    from flax import nnx

    if nnx.to_flat_state(nnx.state(module, nnx.Not(nnx.Param))):
        return False
    loose = (node for _, node in nnx.iter_graph(module) if not isinstance(node, nnx.Variable | nnx.Module))
    return not any(isinstance(leaf, jax.Array) for node in loose for leaf in jax.tree.leaves(node))


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

    The forward and backward passes compile as one program (``jax.jit``):
    run eagerly, every operation of both would be a program of its own.

    Returns:
      ``(output, d_x, d_params)``: the output, the gradient of
      ``sum(output * cotangent)`` with respect to ``x``, and with respect to
      every ``nnx.Param`` (named as in :func:`param_arrays`).
    """
    from flax import nnx

    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def pure(params, x):
        return call(nnx.merge(graphdef, params, rest), x)

    @jax.jit
    def output_and_vjp(params, x, cotangent):
        output, vjp = jax.vjp(pure, params, x)
        return output, vjp(cotangent)

    output, (d_params, d_x) = output_and_vjp(params, x, cotangent)
    return np.asarray(output), np.asarray(d_x), _flat(d_params)


def flatten_params(prefix: str, params) -> dict[str, np.ndarray]:
    """``{"<prefix>.<l>.W": ..., "<prefix>.<l>.b": ...}`` for a list of ``(W, b)``."""
    out = {}
    for layer, (W, b) in enumerate(params):
        out[f"{prefix}.{layer}.W"] = np.asarray(W)
        out[f"{prefix}.{layer}.b"] = np.asarray(b)
    return out


def unflatten_params(arrays: dict[str, np.ndarray], prefix: str) -> list[tuple[jax.Array, jax.Array]]:
    """The inverse of :func:`flatten_params`, as JAX arrays (copied by ``jax.device_put``, which compiles nothing)."""
    params = []
    while f"{prefix}.{len(params)}.W" in arrays:
        layer = len(params)
        params.append((jax.device_put(arrays[f"{prefix}.{layer}.W"]), jax.device_put(arrays[f"{prefix}.{layer}.b"])))
    return params
