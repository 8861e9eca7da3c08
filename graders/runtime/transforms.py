"""Calling a function the way a suite asks: plainly, under ``jit`` or ``vmap``, or with its VJP.

The worker applies these to the student's function and the grader to the
reference's, so both sides compute exactly the same thing. Array leaves of the
arguments become ``jax.Array``; other leaves (``int``, ``float``, ``None``)
stay Python values, which ``jit`` treats as compile-time constants.
For modules (Flax NNX), ``params`` are the module's ``nnx.Param`` leaves keyed
by their path (``"blocks/0/kernel"``); the VJP then also differentiates them.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

TRANSFORMS = (None, "jit", "vmap", "vjp")


class StructureError(ValueError):
    """The outputs' structure does not match the cotangent's (a submission's fault)."""


def _is_leaf(x) -> bool:
    """Only tuples, lists and dicts are containers: an object (an NNX module) is kept whole, never rebuilt."""
    return not isinstance(x, tuple | list | dict)


def to_jax(tree):
    """``tree`` with its numpy arrays turned into jax arrays.

    ``jax.device_put``, not ``jnp.asarray``, which compiles a small program for every new shape.
    """
    return jax.tree.map(lambda x: jax.device_put(x) if isinstance(x, np.ndarray | np.generic) else x, tree, is_leaf=_is_leaf)


def holds_objects(tree) -> bool:
    """Whether ``tree`` holds anything but arrays, Python scalars and containers."""
    return any(not (x is None or isinstance(x, bool | int | float | str | jax.Array | np.ndarray | np.generic))
               for x in jax.tree.leaves(tree, is_leaf=_is_leaf))


def is_module(x) -> bool:
    """Whether ``x`` is a Flax NNX module (without importing flax when the submission did not)."""
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(x, nnx.Module)


def _is_float_array(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating)


def _describe(leaves) -> str:
    return ", ".join(f"{jnp.dtype(x.dtype).name}{list(x.shape)}" if hasattr(x, "shape") else type(x).__name__ for x in leaves)


def match_cotangent(outputs, cotangent):
    """``cotangent`` laid out like ``outputs``, each leaf cast to its output's dtype.

    Args:
      outputs: what the differentiated function returned.
      cotangent: one array per output leaf, in the order of ``jax.tree.leaves``
        of the expected output (tuples and lists count alike).

    Raises:
      StructureError: the outputs hold other numbers or shapes of arrays.
    """
    out_leaves, treedef = jax.tree.flatten(outputs)
    ct_leaves = jax.tree.leaves(cotangent)
    if len(out_leaves) != len(ct_leaves) or any(
        not hasattr(o, "shape") or tuple(o.shape) != tuple(np.shape(c)) for o, c in zip(out_leaves, ct_leaves)
    ):
        raise StructureError(
            f"the outputs are ({_describe(out_leaves)}); expected arrays of shapes "
            f"({', '.join(str(list(np.shape(c))) for c in ct_leaves)})"
        )
    matched = [
        jnp.asarray(c, o.dtype) if jnp.issubdtype(o.dtype, jnp.inexact) else np.zeros(o.shape, jax.dtypes.float0)
        for o, c in zip(out_leaves, ct_leaves)
    ]
    return jax.tree.unflatten(treedef, matched)


def apply(fn, args: tuple = (), kwargs: dict | None = None, *, transform: str | None = None, in_axes=None,
          cotangent=None, compile: bool = False):
    """Calls ``fn(*args, **kwargs)`` under ``transform``.

    Args:
      fn: the function.
      args, kwargs: its arguments (numpy or jax arrays, Python scalars, containers).
      transform: ``None``; ``"jit"`` (the array leaves are traced, the rest static);
        ``"vmap"`` over the positional arguments with ``in_axes`` (one int or
        ``None`` per argument; keyword arguments are not mapped); or ``"vjp"``.
      cotangent: for ``"vjp"``: see :func:`match_cotangent`.
      compile: compile the whole computation with ``jax.jit`` (array leaves
        traced, everything else static), which costs one compilation per shape
        instead of one per operation; when ``fn`` cannot be traced (Python
        control flow on values, outputs that are not arrays...) it runs as
        written instead, so the outputs are always ``fn``'s own.

    Returns:
      The outputs; for ``"vjp"`` the pair ``(outputs, grads)`` where ``grads``
      has the structure of ``args`` with the gradient at every floating-point
      array and ``None`` elsewhere (keyword arguments are not differentiated).
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform: expected one of {TRANSFORMS}, got {transform!r}")
    args, kwargs, cotangent = to_jax(tuple(args)), to_jax(dict(kwargs or {})), to_jax(cotangent)
    if compile:
        try:
            return _compiled(fn, args, kwargs, transform, in_axes, cotangent)
        except Exception:  # not traceable as a whole: the plain run below gives fn's own result or error
            pass
    return _apply(fn, args, kwargs, transform, in_axes, cotangent)


_COMPILED: dict = {}  # (fn, transform, in_axes, structure, static leaves) -> jitted computation


def _compiled(fn, args, kwargs, transform, in_axes, cotangent):
    leaves, treedef = jax.tree.flatten((args, kwargs, cotangent), is_leaf=_is_leaf)
    traced = [i for i, x in enumerate(leaves) if isinstance(x, jax.Array)]
    static = tuple((i, x) for i, x in enumerate(leaves) if i not in set(traced))
    key = (fn, transform, repr(in_axes), treedef, static)
    if key not in _COMPILED:
        def whole(*values):
            full = list(leaves)
            for i, value in zip(traced, values):
                full[i] = value
            return _apply(fn, *jax.tree.unflatten(treedef, full)[:2], transform, in_axes, jax.tree.unflatten(treedef, full)[2])

        _COMPILED[key] = jax.jit(whole)
    return _COMPILED[key](*(leaves[i] for i in traced))


def _apply(fn, args, kwargs, transform, in_axes, cotangent):
    if transform is None:
        return fn(*args, **kwargs)
    if transform == "vmap":
        return jax.vmap(lambda *a: fn(*a, **kwargs), in_axes=tuple(in_axes))(*args)
    leaves, treedef = jax.tree.flatten((args, kwargs), is_leaf=_is_leaf)
    traced = [i for i, x in enumerate(leaves) if (_is_float_array(x) if transform == "vjp" else isinstance(x, jax.Array))]
    if transform == "vjp":  # keyword arguments stay constant
        traced = [i for i in traced if i < len(jax.tree.leaves(args, is_leaf=_is_leaf))]

    def call(*values):
        full = list(leaves)
        for i, value in zip(traced, values):
            full[i] = value
        a, k = jax.tree.unflatten(treedef, full)
        return fn(*a, **k)

    if transform == "jit":
        return jax.jit(call)(*(leaves[i] for i in traced))
    outputs, pullback = jax.vjp(call, *(leaves[i] for i in traced))
    grads = pullback(match_cotangent(outputs, cotangent))
    full = [None] * len(leaves)
    for i, grad in zip(traced, grads):
        full[i] = grad
    return outputs, jax.tree.unflatten(treedef, full)[0]


def _nnx():
    from flax import nnx

    return nnx


# A copy of course.params' flattening (same "/" names): the worker imports nothing of the project.
def _flat_params(state) -> dict[str, tuple[tuple, object]]:
    """``{"a/b/kernel": (path, variable)}`` for every variable of an NNX ``state``."""
    return {"/".join(map(str, path)): (path, var) for path, var in _nnx().to_flat_state(state)}


def get_params(module) -> dict[str, jax.Array]:
    """The ``nnx.Param`` leaves of ``module``, keyed ``"a/b/kernel"``."""
    nnx = _nnx()
    return {key: var.get_value() for key, (_, var) in _flat_params(nnx.state(module, nnx.Param)).items()}


def set_params(module, params: dict[str, np.ndarray]) -> None:
    """Copies ``params`` into ``module``; the paths, shapes and dtypes must match.

    Raises:
      StructureError: a path is missing or extra, or a shape or dtype differs.
    """
    nnx = _nnx()
    have = _flat_params(nnx.state(module, nnx.Param))
    if set(have) != set(params):
        raise StructureError(f"the module's parameters are {sorted(have)}; expected {sorted(params)}")
    new = {}
    for key, (path, var) in have.items():
        value = var.get_value()
        if tuple(value.shape) != tuple(np.shape(params[key])) or jnp.dtype(value.dtype) != np.asarray(params[key]).dtype:
            raise StructureError(
                f"parameter {key}: expected {np.asarray(params[key]).dtype}{list(np.shape(params[key]))}, "
                f"got {jnp.dtype(value.dtype).name}{list(value.shape)}"
            )
        new[path] = jax.device_put(np.asarray(params[key]))
    nnx.update(module, nnx.from_flat_state(new))


def construct(build, args: tuple = (), kwargs: dict | None = None, *, params_follow: bool = False):
    """``build(*args, **kwargs)``; with ``params_follow``, an NNX module whose parameters are placeholders.

    Every random initial weight of a module built for real is a program of its
    own to compile, and the grader replaces them all (:func:`set_params`). So
    with ``params_follow`` the module is built by ``nnx.eval_shape``, which
    computes nothing, and kept so when its parameters are its only arrays.
    Anything else (a constructor that needs concrete values, other state, an
    error, something that is no module) is built for real, and raises as it would.
    """
    kwargs = dict(kwargs or {})
    if params_follow and "flax.nnx" in sys.modules:
        nnx = _nnx()
        try:
            module = nnx.eval_shape(lambda: build(*args, **kwargs))
        except Exception:  # built for real below, which raises the constructor's own error
            module = None
        if is_module(module) and not jax.tree.leaves(nnx.state(module, nnx.Not(nnx.Param))):
            return module
    return build(*args, **kwargs)


def apply_module(module, method: str, args: tuple = (), kwargs: dict | None = None, *, transform: str | None = None,
                 in_axes=None, cotangent=None, compile: bool = False):
    """:func:`apply` for ``getattr(module, method)``; its VJP also covers the parameters.

    Returns:
      As :func:`apply`; for ``"vjp"``, ``(outputs, (grads, param_grads))`` with
      ``param_grads`` keyed like :func:`get_params`.
    """
    nnx = _nnx()
    if transform != "vjp":
        return apply(getattr(module, method), args, kwargs, transform=transform, in_axes=in_axes, compile=compile)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    flat = _flat_params(params)
    weights = {key: var.get_value() for key, (_, var) in flat.items()}
    call = _with_weights(graphdef, method, tuple((key, path) for key, (path, _) in flat.items()), rest)
    outputs, (param_grads, *grads) = apply(call, (weights, *args), kwargs, transform="vjp", cotangent=cotangent, compile=compile)
    return outputs, (tuple(grads), param_grads)


_WITH_WEIGHTS: dict = {}  # (graphdef, method, paths) -> the function of weights and arguments: one per structure


def _with_weights(graphdef, method: str, paths: tuple, rest):
    """``call(weights, *args, **kwargs)``: the module ``graphdef`` with ``weights`` (keyed like :func:`get_params`), called.

    Modules of one structure (a case's fresh module, the next case's) share one
    function, and so one compiled program per shape; a module with state
    besides its parameters gets its own, which holds that state.
    """
    nnx = _nnx()

    def call(weights, *a, **k):
        state = nnx.from_flat_state({path: weights[key] for key, path in paths})
        return getattr(nnx.merge(graphdef, state, rest), method)(*a, **k)

    if jax.tree.leaves(rest):
        return call
    try:
        return _WITH_WEIGHTS.setdefault((graphdef, method, paths), call)
    except TypeError:  # a static attribute that cannot be hashed
        return call
